"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, and Verity served for real.

- `browser`: one headless Chromium per session (`/usr/bin/chromium`; `scripts/bootstrap.sh --test`
  installs it; we never run `playwright install`).
- `verity_server`: brings up the embedded default the way the README does, `bash scripts/run.sh`,
  on a free port with a fresh data directory (so a fresh SQLite database), waits for `/healthz`,
  yields its base URL and the demo customer's credentials, and stops the whole process group.
- `page`: a fresh browser context per test that records console errors (a CSP violation shows up
  there) and every request the page makes.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[2]
# First start converts the bundled model and installs nothing else; later starts take seconds.
SERVER_START_TIMEOUT_S = float(os.environ.get("VERITY_TEST_SERVER_TIMEOUT_S", "900"))
# Variables the pytest process carries for its own Django settings; the server must not inherit them.
_STRIPPED_ENV_PREFIXES = ("VERITY_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_")
_CUSTOMER_LINE = re.compile(r"username:\s*(demo-customer)\s+password:\s*(\S+)")
# Playwright's sync API keeps an asyncio loop in the main thread, which Django's async-safety check
# mistakes for async code; the services-mode test uses the test database from that same thread.
# Only this test process is affected: servers started here get an environment without DJANGO_*.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/bootstrap.sh --test` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class PageLog:
    """What a page did that a test may want to assert on."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser, page_log: PageLog):
    """A fresh context (no cookies) per test, desktop-sized, with its console and requests logged."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(15_000)
    new_page = context.new_page()
    new_page.on("console", lambda msg: page_log.console_errors.append(msg.text) if msg.type == "error" else None)
    new_page.on("pageerror", lambda exc: page_log.page_errors.append(str(exc)))
    new_page.on("request", lambda request: page_log.requests.append(request.url))
    yield new_page
    context.close()


# ---------------------------------------------------------------------------------------------
# The real server
# ---------------------------------------------------------------------------------------------


@dataclass
class VerityServer:
    base_url: str
    data_dir: Path
    env: dict[str, str]
    username: str
    password: str
    output: list[str]

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run `manage.py` against the same data directory and settings as the server."""
        return subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env(port: int, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_ENV_PREFIXES)}
    env.update(PORT=str(port), VERITY_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    # A short answer is enough to see streaming, storing and auditing (a full 512-token answer takes
    # minutes on two shared CPU cores), but it must outrun the safety stage's 200-character
    # hold-back, or all of it would be released at once when generation ends.
    env["VERITY_MAX_NEW_TOKENS"] = os.environ.get("VERITY_TEST_MAX_NEW_TOKENS", "96")
    # One intra-op thread: on a busy shared machine torch's spinning threads slow each other down.
    env.setdefault("OMP_NUM_THREADS", "1")
    # The converted bundled model lives in the repository's data dir; reuse it rather than convert
    # it again into every temporary data dir (the conversion is what `make run` does once).
    shared_model = REPO / "var" / "models" / "smollm2-135m-instruct"
    if shared_model.is_dir():
        env["VERITY_MODEL"] = str(shared_model)
    return env


def _health(base_url: str) -> tuple[bool, str]:
    """(healthy, what /healthz said) - a 503 body names the part that is down."""
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as response:
            return response.status == 200, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:2000]}"
    except OSError as exc:  # not listening yet
        return False, str(exc)


def _pump(stream, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line.rstrip("\n"))


@contextlib.contextmanager
def _serve(env: dict[str, str], port: int, data_dir: Path) -> Iterator[VerityServer]:
    """Run `bash scripts/run.sh` with `env` until /healthz says ok; stop its process group afterwards."""
    run_sh = REPO / "scripts" / "run.sh"
    if not run_sh.exists():
        pytest.fail("scripts/run.sh is missing: the README's run command cannot start")
    base_url = f"http://127.0.0.1:{port}"
    output: list[str] = []
    process = subprocess.Popen(
        ["bash", str(run_sh)], cwd=REPO, env={**env, "PORT": str(port)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    threading.Thread(target=_pump, args=(process.stdout, output), daemon=True).start()
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        healthy, said = _health(base_url)
        while not healthy:
            if process.poll() is not None:
                pytest.fail(f"scripts/run.sh exited with {process.returncode}:\n" + "\n".join(output[-40:]))
            if time.monotonic() > deadline:
                pytest.fail(f"/healthz did not answer 200 within {SERVER_START_TIMEOUT_S:.0f}s; it said {said}\n"
                            + "\n".join(output[-40:]))
            time.sleep(1)
            healthy, said = _health(base_url)
        server = VerityServer(base_url, data_dir, env, "", "", output)
        server.username, server.password = _demo_customer(server)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def verity_server() -> Iterator[VerityServer]:
    """The embedded default, as a newcomer runs it: `scripts/run.sh` with a fresh data directory."""
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="verity-browser-") as tmp, _serve(
        _server_env(port, Path(tmp)), port, Path(tmp)
    ) as server:
        yield server


@pytest.fixture
def services_server(start_worker, real_model, tmp_path: Path) -> Iterator[VerityServer]:
    """Services mode: `scripts/run.sh` with VERITY_MODE=services on this test run's PostgreSQL
    database, Redis queue and stream prefix (tests/conftest.py's subprocess_env), plus a real
    `celery worker --pool threads` process that generates the replies."""
    from tests.conftest import subprocess_env

    overrides = {"VERITY_MAX_NEW_TOKENS": os.environ.get("VERITY_TEST_MAX_NEW_TOKENS", "96")}
    start_worker("browser", **overrides)
    port = _free_port()
    env = subprocess_env(**overrides, VERITY_DATA_DIR=str(tmp_path))
    with _serve(env, port, tmp_path) as server:
        yield server


def _demo_customer(server: VerityServer) -> tuple[str, str]:
    """The demo customer's credentials as run.sh printed them (demo_setup's output)."""
    for line in server.output:
        match = _CUSTOMER_LINE.search(line)
        if match:
            return match.group(1), match.group(2)
    # run.sh did not print them (or printed them before we listened): set a known password the
    # documented way, against the same database.
    password = "browser-test-" + os.urandom(6).hex()
    result = server.manage("demo_setup", "--password", password)
    if result.returncode != 0:
        pytest.fail(f"manage.py demo_setup failed:\n{result.stdout}\n{result.stderr}")
    return "demo-customer", password


def login(page, server: VerityServer) -> None:
    """Sign in as the demo customer through the login form and land on the chat page."""
    page.goto(f"{server.base_url}/accounts/login/?next=/chat/")
    page.get_by_label("Username").fill(server.username)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/chat/.*"))
    page.wait_for_selector("body[data-chat-ready='true']")


def wait_for_answer(page, server: VerityServer, timeout_ms: int) -> None:
    """Wait until the last assistant message stops streaming (or the page shows an API error, which
    ends the wait early); on timeout say what was on screen."""
    try:
        page.wait_for_selector("article.message-assistant[data-streaming='false'], #error:not([hidden])",
                               timeout=timeout_ms)
    except Exception as exc:  # noqa: BLE001 - re-raised as a failure with the evidence
        shown = page.locator("#messages").inner_text()
        pytest.fail(f"no finished answer within {timeout_ms / 1000:.0f}s ({exc.__class__.__name__}).\n"
                    f"On screen:\n{shown}\nServer output:\n" + "\n".join(server.output[-30:]))
