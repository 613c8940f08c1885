"""Chat streaming benchmark: engine first token -> browser first painted token, and SSE relay overhead.

    .venv/bin/python benchmarks/chat.py [--paint-runs 5] [--conversations 20] [--events 50] [--max-tokens 16]

Services mode, end to end: a throwaway PostgreSQL database and Redis key prefix, uvicorn serving the
chat API in a subprocess, and this process acting as the worker (`reply_generate` with the bundled
SmolLM2 model, the real safety output stage, Redis Streams).

1. First paint: Chromium (Playwright, /usr/bin/chromium --headless --no-sandbox --disable-gpu
   --disable-background-networking) opens /chat/ signed in, subscribes to the reply's events with
   EventSource, writes the first `answer.delta` into the page and records the time of the next frame
   after it (two requestAnimationFrame callbacks = painted). The engine's first token time is taken
   where the worker receives it from `generation_stream`. Same machine, same wall clock.
2. Relay overhead: `--conversations` SSE clients follow their own reply stream at once while this
   process publishes `--events` events to each; overhead = client receive time - publish time, per
   event. A bare Redis XREAD follower is measured the same way for comparison.
Everything started is stopped and the database dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

PAINT_JS = """(url) => { window.__painted = new Promise((resolve, reject) => {
  const out = document.createElement('div'); document.body.appendChild(out);
  const source = new EventSource(url);
  const timer = setTimeout(() => { source.close(); reject(new Error('no answer.delta in 120 s')); }, 120000);
  source.addEventListener('answer.delta', (event) => {
    if (out.textContent) return;
    out.textContent = JSON.parse(event.data).text;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      clearTimeout(timer); source.close(); resolve(performance.timeOrigin + performance.now());
    }));
  });
}); return null; }"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(run: str, db_name: str, max_tokens: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERITY_", "DATABASE_URL", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VERITY_MODE="services", DEBUG="0",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
               REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
               VERITY_CELERY_QUEUE=f"verity-{run}", VERITY_STREAM_PREFIX=f"verity:{run}:",
               VERITY_MAX_NEW_TOKENS=str(max_tokens), SECRET_KEY=f"benchmark-only-secret-{run}-0123456789abcdef",
               ALLOWED_HOSTS="127.0.0.1,localhost", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               VERITY_SSE_HEARTBEAT_S="15")
    return env


def first_paint(base: str, cookie: str, user, runs: int) -> tuple[list[float], list[float], list[float]]:
    """Milliseconds per run: engine first token -> painted; engine -> published (safety hold-back);
    published -> painted (Redis, SSE relay, browser)."""
    from playwright.sync_api import sync_playwright

    from apps.accounts.selectors import user_tenant_get
    from apps.conversations import dispatch
    from apps.conversations.services import conversation_create, reply_generate, turn_submit
    from apps.inference import services as inference

    dispatch.reply_enqueue = lambda reply_id: None  # this process is the worker: generate explicitly below
    firsts: dict[str, float] = {}
    real = inference.generation_stream

    def stamped(*, messages, sampling, max_tokens, profile="r1"):
        for chunk in real(messages=messages, sampling=sampling, max_tokens=max_tokens, profile=profile):
            firsts.setdefault("t", time.time())
            yield chunk

    inference.generation_stream = stamped
    from apps.conversations import services as conversation_services

    bus = conversation_services.stream_bus()
    publish = bus.publish

    def publish_stamped(reply_id, event, data):  # when the first answer text left the safety output stage
        if event == "answer.delta":
            firsts.setdefault("published", time.time())
        return publish(reply_id, event, data)

    bus.publish = publish_stamped
    inference.engine_get("r1")  # load once before timing
    gaps, held, relayed = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(bypass_csp=True)
        context.add_cookies([{"name": "sessionid", "value": cookie, "url": base}])
        page = context.new_page()
        page.goto(f"{base}/chat/")
        for _ in range(runs):
            conversation = conversation_create(tenant=user_tenant_get(user=user), user=user, domain="finance")
            reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
            firsts.clear()
            page.evaluate(PAINT_JS, f"/chat/api/replies/{reply.id}/events")
            time.sleep(0.3)  # the EventSource is connected and waiting before the engine starts
            worker = threading.Thread(target=reply_generate, kwargs={"reply_id": str(reply.id)})
            worker.start()
            painted_at = page.evaluate("() => window.__painted") / 1000
            worker.join()
            gaps.append((painted_at - firsts["t"]) * 1000)
            held.append((firsts["published"] - firsts["t"]) * 1000)
            relayed.append((painted_at - firsts["published"]) * 1000)
        browser.close()
    return gaps, held, relayed


async def _follow_sse(client: httpx.AsyncClient, url: str, count: int, seen: list[float]) -> None:
    async with client.stream("GET", url) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if "t" in data:
                    seen.append((time.time() - data["t"]) * 1000)
                    count -= 1
                    if count == 0:
                        return


def relay_overhead(base: str, cookie: str, user, conversations: int, events: int) -> tuple[list[float], list[float]]:
    """Per-event publish -> SSE client latency with `conversations` concurrent streams; and bare XREAD."""
    from apps.accounts.selectors import user_tenant_get
    from apps.conversations.services import conversation_create, turn_submit
    from apps.conversations.streams import stream_bus

    bus = stream_bus()
    replies = []
    for _ in range(conversations):
        conversation = conversation_create(tenant=user_tenant_get(user=user), user=user, domain="finance")
        replies.append(str(turn_submit(conversation=conversation, text="What is a bond?").reply.id))
    seen: list[float] = []

    def publish() -> None:
        time.sleep(1.0)  # every client is connected
        for index in range(events):
            for reply_id in replies:
                bus.publish(reply_id, "answer.delta", {"text": f"w{index} ", "t": time.time()})
            time.sleep(0.02)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, cookies={"sessionid": cookie}, timeout=120,
                                     limits=httpx.Limits(max_connections=conversations + 4)) as client:
            publisher = threading.Thread(target=publish)
            publisher.start()
            await asyncio.gather(*(_follow_sse(client, f"/chat/api/replies/{r}/events", events, seen)
                                   for r in replies))
            publisher.join()

    asyncio.run(run())

    bare: list[float] = []
    reply_id = replies[0]
    after = bus.publish(reply_id, "answer.delta", {"text": "mark"})

    def reader() -> None:
        nonlocal after
        while len(bare) < events:
            for event_id, _event, data in bus.read(reply_id, after, 2000):
                after = event_id
                if "t" in data:
                    bare.append((time.time() - data["t"]) * 1000)

    thread = threading.Thread(target=reader)
    thread.start()
    for index in range(events):
        time.sleep(0.02)
        bus.publish(reply_id, "answer.delta", {"text": f"b{index}", "t": time.time()})
    thread.join()
    return seen, bare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paint-runs", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    run = f"chatbench{os.getpid()}"
    db_name = f"verity_{run}"
    env = _environment(run, db_name, args.max_tokens)
    os.environ.update(env)
    # Playwright's sync API keeps an event loop on this thread; the ORM calls here are plain sequential code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'CREATE DATABASE "{db_name}"')
    server = None
    try:
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.test import Client

        from apps.accounts.services import demo_tenant_get, user_create
        from apps.prompt_packs.services import packs_load

        call_command("migrate", "--noinput", verbosity=0)
        packs_load(root=settings.VERITY_DOMAINS_DIR)
        user = user_create(tenant=demo_tenant_get(), username="bench", password="bench-password-123",
                           validate=False)
        client = Client()
        client.force_login(user)
        cookie = client.cookies["sessionid"].value

        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(REPO / "var" / f"{run}.log", "w")  # noqa: SIM115 - closed with the process
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "uvicorn"), "config.asgi:application", "--port", str(port),
             "--no-access-log", "--log-level", "warning"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not come up; see {log.name}")
            time.sleep(0.5)

        gaps, held, painted = first_paint(base, cookie, user, args.paint_runs)
        relayed, bare = relay_overhead(base, cookie, user, args.conversations, args.events)
        print(f"\nchat streaming, services mode (Redis Streams + uvicorn), bundled SmolLM2-135M, "
              f"{os.cpu_count()} CPUs, {platform.machine()}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'measure':58} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'target':>10}")
        print(f"{'-' * 58} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 10}")
        rows = [
            (f"engine first token -> browser painted ({len(gaps)} runs)", gaps, "< 50 p95"),
            ("  of which: engine -> first answer.delta published", held, ""),
            ("  of which: published -> browser painted", painted, ""),
            (f"publish -> SSE client, {args.conversations} concurrent ({len(relayed)} ev)", relayed, "< 2 p95"),
            (f"publish -> bare Redis XREAD follower ({len(bare)} ev)", bare, ""),
        ]
        for name, values, target in rows:
            print(f"{name:58} {pct(values, 0.5):8.2f} {pct(values, 0.95):8.2f} {max(values):8.2f} {target:>10}")
        overhead = [pct(relayed, q) - pct(bare, q) for q in (0.5, 0.95)]
        print(f"SSE relay overhead beyond Redis itself: p50 {overhead[0]:.2f} ms, p95 {overhead[1]:.2f} ms")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        from django.db import connections

        connections.close_all()
        admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
