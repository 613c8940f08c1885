"""Shared fixtures: packs and users in the test database, a stand-in engine, real Celery workers.

The suite runs against real PostgreSQL and real Redis (config.settings.test); every pytest process
has its own test database, Celery queue and stream-key prefix, cleaned up at the end of the session.

`fake_engine` stands in for model_core ONLY where the engine is not the subject (error paths,
reconciler bookkeeping, stream relaying); end-to-end tests use the real bundled model through
`celery_worker` / `manage_py` subprocesses.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
_STRIPPED_ENV_PREFIXES = ("VERITY_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_", "TEST_DATABASE_URL")


# -- data -------------------------------------------------------------------------------------------


@pytest.fixture
def packs(db: Any) -> list[Any]:
    """The real domain packs from domains/, loaded and published."""
    from django.conf import settings

    from apps.prompt_packs.services import packs_load

    return packs_load(root=settings.VERITY_DOMAINS_DIR)


@pytest.fixture
def customer(db: Any) -> Any:
    from apps.accounts.services import demo_tenant_get, user_create

    return user_create(tenant=demo_tenant_get(), username="alice", password="correct horse battery 9",
                       validate=False)


@pytest.fixture
def customer_client(customer: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(customer)
    return client


# -- the stand-in engine --------------------------------------------------------------------------


@dataclass
class FakeEngine:
    """Streams a fixed reasoning and answer, token by token; records the prompts it was given."""

    reasoning: str = "The user asks about interest. "
    answer: str = "Compound interest is interest earned on interest already added to the balance. "
    delay_s: float = 0.0
    fail_with: Exception | None = None
    prompts: list[list[dict[str, str]]] = field(default_factory=list)

    def stream(self, messages: list[dict[str, str]], max_tokens: int) -> Iterator[Any]:
        from apps.inference.services import Chunk

        self.prompts.append(messages)
        if self.fail_with is not None:
            raise self.fail_with
        count, truncated = 0, False
        for kind, text in (("reasoning", self.reasoning), ("answer", self.answer)):
            for word in text.split(" ") if text else []:
                if count >= max_tokens:
                    truncated = True
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                count += 1
                yield Chunk(kind, word + " ")
        yield Chunk("finish", finish_reason="length" if truncated else "stop",
                    usage={"prompt_tokens": 10, "completion_tokens": count, "total_tokens": 10 + count})


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    """Replace apps.inference's generation seam with FakeEngine (model_core is not the subject)."""
    from apps.inference import services as inference

    engine = FakeEngine()
    monkeypatch.setattr(inference, "engine_version", lambda profile="r1": f"fake/{profile}")
    monkeypatch.setattr(inference, "engine_is_r1", lambda *, profile="r1": False)
    monkeypatch.setattr(inference, "context_length", lambda *, profile="r1": 8192)
    monkeypatch.setattr(inference, "chat_token_count",
                        lambda messages, *, profile="r1": sum(len(m["content"]) // 4 + 4 for m in messages))
    monkeypatch.setattr(inference, "generation_stream",
                        lambda *, messages, sampling, max_tokens, profile="r1": engine.stream(messages, max_tokens))
    return engine


# -- real processes ---------------------------------------------------------------------------------


def model_path() -> Path:
    from django.conf import settings

    return Path(settings.VERITY_MODEL)


@pytest.fixture(scope="session")
def real_model() -> Path:
    """The bundled checkpoint; scripts/bootstrap.sh (run by `make test`) creates it."""
    path = model_path()
    if not (path / "config.json").exists() and not path.is_file():
        pytest.fail(f"the bundled model is missing at {path}: run `bash scripts/bootstrap.sh` first")
    return path


def subprocess_env(**overrides: str) -> dict[str, str]:
    """Environment for a services-mode subprocess sharing this test run's database, queue and streams."""
    from django.conf import settings
    from django.db import connection

    db = connection.settings_dict
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VERITY_MODE="services",
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/"
                     f"{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        VERITY_CELERY_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
        VERITY_STREAM_PREFIX=settings.VERITY_STREAM_PREFIX,
        VERITY_MODEL=str(settings.VERITY_MODEL),
        VERITY_MAX_NEW_TOKENS="24",
        SECRET_KEY=settings.SECRET_KEY,  # sessions made by the test process stay valid in subprocesses
        DEBUG="1",
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",  # the machine is shared: keep each worker to one core
        PYTHONUNBUFFERED="1",
    )
    env.update(overrides)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def start_worker(tmp_path: Path, transactional_db: Any) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real `celery -A config worker --pool threads -c 2` processes; all are stopped afterwards."""
    started: list[WorkerProcess] = []

    def start(name: str = "w1", **env: str) -> WorkerProcess:
        log_path = tmp_path / f"celery-{name}.log"
        handle = log_path.open("w")
        queue = subprocess_env()["VERITY_CELERY_QUEUE"]
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "config", "worker", "--pool", "threads",
             "-c", "2", "-Q", queue, "-n", f"{name}-{os.getpid()}@%h", "--without-gossip",
             "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
            cwd=REPO, env=subprocess_env(**env), stdout=handle, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = WorkerProcess(process, log_path)
        started.append(worker)
        deadline = time.monotonic() + 120
        while " ready." not in worker.log():
            if process.poll() is not None or time.monotonic() > deadline:
                worker.stop()
                pytest.fail(f"celery worker did not start:\n{worker.log()[-3000:]}")
            time.sleep(0.3)
        return worker

    yield start
    for worker in started:
        worker.stop()


def manage_py(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session", autouse=True)
def _redis_test_keys_cleanup() -> Iterator[None]:
    """Delete this run's stream keys and Celery queue from the shared Redis at the end."""
    yield
    if "apps.conversations.streams" not in sys.modules:
        return  # no test of this run touched Redis
    from django.conf import settings

    if settings.VERITY_MODE != "services":
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{settings.VERITY_STREAM_PREFIX}*", count=1000))
        keys.append(settings.CELERY_TASK_DEFAULT_QUEUE)
        client.delete(*keys)
    except redis.RedisError:
        pass


@pytest.fixture(autouse=True)
def _fresh_stream_bus() -> Iterator[None]:
    """Each test gets a new stream bus (tests switch modes); imports nothing for model_core tests."""
    streams = sys.modules.get("apps.conversations.streams")
    if streams is not None:
        streams.stream_bus_reset()
    yield
    streams = sys.modules.get("apps.conversations.streams")
    if streams is not None:
        streams.stream_bus_reset()
