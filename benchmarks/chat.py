"""Chat streaming benchmark: engine first token -> browser first painted token, and SSE relay overhead.

    .venv/bin/python benchmarks/chat.py [--paint-runs 5] [--conversations 20] [--events 50] [--max-tokens 16]
                                        [--holdback N] [--question TEXT] [--only paint|relay]
                                        [--quantize int8|none] [--policies mid-word,whole-words]

Services mode, end to end: a throwaway PostgreSQL database and Redis key prefix, uvicorn serving the
chat API in a subprocess, and this process acting as the worker (`reply_generate` with the bundled
SmolLM2 model, the real safety output stage, Redis Streams).

1. First paint: Chromium (Playwright, /usr/bin/chromium --headless --no-sandbox --disable-gpu
   --disable-background-networking) opens /chat/ signed in, subscribes to the reply's events with
   EventSource, writes the first `answer.delta` into the page and records the time of the next frame
   after it (two requestAnimationFrame callbacks = painted). The engine's first token time is taken
   where the worker receives it from `generation_stream`. Same machine, same wall clock. The output
   stage releases the first words of an unfinished sentence once no check could still match them
   (`apps/safety/partial.py`). Two release policies side by side, runs interleaved: `mid-word` (the
   product's for free text: the engine cannot write `@`, so a word's first letters leave with its
   first token) and `whole-words` (released text ends on a word boundary, so the first paint waits for
   the token that ends the first word; the product's policy for structured output, and for all replies
   before mid-word release). Printed per run: how many engine chunks had arrived when the first text
   left, and that text, plus the engine's token-to-token gap for scale.
2. Relay overhead: `--conversations` SSE clients follow their own reply stream at once while this
   process publishes `--events` events to each; overhead = client receive time - publish time, per
   event. As a like-for-like baseline, as many asyncio XREAD followers in this process read the same
   streams straight from Redis; the relay's overhead is the difference (one lone blocking follower too).
Everything started is stopped and the database dropped at the end.

`--holdback N` is a what-if for the safety owners: the worker in this process builds its output stage
with that hold-back (the pipeline refuses less than `rules.MAX_OUTPUT_MATCH`, 160), to show how much of
the first-paint time the hold-back accounts for. The product's own setting is unchanged.

`--quantize int8|none` sets VERITY_ENGINE_QUANTIZE for this run (default: the product's default, int8 on
CPU); the header names the R1 engine's audit label (checkpoint/profile/dtype[/int8][+adapter]).
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


def _environment(run: str, db_name: str, max_tokens: int, quantize: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERITY_", "DATABASE_URL", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VERITY_MODE="services", DEBUG="0",
               DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{db_name}",
               REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
               VERITY_CELERY_QUEUE=f"verity-{run}", VERITY_STREAM_PREFIX=f"verity:{run}:",
               VERITY_MAX_NEW_TOKENS=str(max_tokens), SECRET_KEY=f"benchmark-only-secret-{run}-0123456789abcdef",
               ALLOWED_HOSTS="127.0.0.1,localhost", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               VERITY_SSE_HEARTBEAT_S="15")
    if quantize is not None:
        env["VERITY_ENGINE_QUANTIZE"] = quantize
    return env


POLICIES = ("mid-word", "whole-words")


def first_paint(base: str, cookie: str, user, runs: int, holdback: int | None = None,
                question: str = "What is compound interest?", policies: tuple[str, ...] = POLICIES
                ) -> dict[str, tuple[list[float], list[float], list[float], list[float], list[float],
                                     list[tuple[int, str]]]]:
    """Per release policy, milliseconds per run: engine first token -> painted; engine -> published
    (safety hold-back); published -> painted (Redis, SSE relay, browser); the arrival of the engine chunk
    that let the first words go -> published (the output stage's own cost); the engine's token-to-token
    gaps; and per run how many engine chunks had arrived when the first answer text left the output
    stage, and that text. `runs` runs per policy, the policies taking turns."""
    from playwright.sync_api import sync_playwright

    from apps.safety.pipeline import SafetyPipeline

    current = {"mid_word": True}
    product_stage = SafetyPipeline.output_stage

    def output_stage(self, *args, mid_word=False, **options):  # whole-words: the stage never splits a word
        return product_stage(self, *args, mid_word=mid_word and current["mid_word"], **options)

    SafetyPipeline.output_stage = output_stage

    if holdback is not None:  # what-if only (see the module docstring)
        original = SafetyPipeline.for_pack.__func__
        SafetyPipeline.for_pack = classmethod(lambda cls, pack, **options: original(
            cls, pack, **{"holdback": holdback, **options}))

    from apps.accounts.selectors import user_tenant_get
    from apps.conversations import dispatch
    from apps.conversations.services import conversation_create, reply_generate, turn_submit
    from apps.inference import services as inference

    dispatch.reply_enqueue = lambda reply_id: None  # this process is the worker: generate explicitly below
    firsts: dict[str, float] = {}
    arrivals: list[float] = []  # engine chunk arrival times of the current run
    real = inference.generation_stream

    def stamped(*, messages, sampling, max_tokens, profile="r1"):
        for chunk in real(messages=messages, sampling=sampling, max_tokens=max_tokens, profile=profile):
            firsts.setdefault("t", time.time())
            if chunk.kind != "finish":
                arrivals.append(time.time())
            yield chunk

    inference.generation_stream = stamped
    from apps.conversations import services as conversation_services

    bus = conversation_services.stream_bus()
    publish = bus.publish

    def publish_stamped(reply_id, event, data):  # when the first answer text left the safety output stage
        if event == "answer.delta" and "published" not in firsts:
            firsts["published"] = time.time()
            releases.append((len(arrivals), data.get("text", "")))
            firsts["stage"] = firsts["published"] - arrivals[-1] if arrivals else 0.0
        return publish(reply_id, event, data)

    bus.publish = publish_stamped
    releases: list[tuple[int, str]] = []
    inference.engine_get("r1")  # load once before timing
    results = {policy: ([], [], [], [], [], []) for policy in policies}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(bypass_csp=True)
        context.add_cookies([{"name": "sessionid", "value": cookie, "url": base}])
        page = context.new_page()
        page.goto(f"{base}/chat/")
        for index in range(runs * len(policies)):
            policy = policies[index % len(policies)]
            current["mid_word"] = policy == "mid-word"
            gaps, held, relayed, staged, token_gaps, first_release = results[policy]
            conversation = conversation_create(tenant=user_tenant_get(user=user), user=user, domain="finance")
            reply = turn_submit(conversation=conversation, text=question).reply
            firsts.clear()
            arrivals.clear()
            page.evaluate(PAINT_JS, f"/chat/api/replies/{reply.id}/events")
            time.sleep(0.3)  # the EventSource is connected and waiting before the engine starts
            worker = threading.Thread(target=reply_generate, kwargs={"reply_id": str(reply.id)})
            worker.start()
            painted_at = page.evaluate("() => window.__painted") / 1000
            worker.join()
            gaps.append((painted_at - firsts["t"]) * 1000)
            held.append((firsts["published"] - firsts["t"]) * 1000)
            relayed.append((painted_at - firsts["published"]) * 1000)
            staged.append(firsts["stage"] * 1000)
            token_gaps += [(b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False)]
            first_release.append(releases.pop())
        browser.close()
    return results


async def _follow_sse(host: str, port: int, path: str, cookie: str, count: int, seen: list[float]) -> None:
    """A minimal SSE client on a raw asyncio socket (HTTP/1.1, chunked body), so the figure is the
    relay's cost rather than a Python HTTP library's parsing: only `data:` lines are looked at."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nCookie: sessionid={cookie}\r\n"
                 f"Accept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    try:
        while count > 0:
            line = await reader.readline()
            if not line:
                raise RuntimeError(f"stream {path} ended early")
            if line.startswith(b"data: "):
                data = json.loads(line[6:])
                if "t" in data:
                    seen.append((time.time() - data["t"]) * 1000)
                    count -= 1
    finally:
        writer.close()


def relay_overhead(base: str, cookie: str, user, conversations: int,
                   events: int) -> tuple[list[float], list[float], list[float]]:
    """Per-event publish -> client latency with `conversations` concurrent streams, three ways: through
    the SSE relay (uvicorn + Django), from Redis directly with as many concurrent asyncio XREAD
    followers in this same process (the like-for-like baseline), and one lone blocking follower."""
    import redis.asyncio as aioredis

    from apps.accounts.selectors import user_tenant_get
    from apps.conversations.services import conversation_create, turn_submit
    from apps.conversations.streams import stream_bus

    bus = stream_bus()
    replies = []
    for _ in range(conversations):
        conversation = conversation_create(tenant=user_tenant_get(user=user), user=user, domain="finance")
        replies.append(str(turn_submit(conversation=conversation, text="What is a bond?").reply.id))

    def publish(tag: str) -> None:
        time.sleep(1.0)  # every client is connected
        for index in range(events):
            for reply_id in replies:
                bus.publish(reply_id, "answer.delta", {"text": f"{tag}{index} ", "t": time.time()})
            time.sleep(0.02)

    seen: list[float] = []

    async def via_relay() -> None:
        host, port = base.removeprefix("http://").split(":")
        publisher = threading.Thread(target=publish, args=("w",))
        publisher.start()
        await asyncio.gather(*(_follow_sse(host, int(port), f"/chat/api/replies/{r}/events", cookie, events, seen)
                               for r in replies))
        publisher.join()

    asyncio.run(via_relay())

    direct: list[float] = []

    async def follow_redis(client, key: str, after: str) -> None:
        count = 0
        while count < events:
            for _key, entries in await client.xread({key: after}, count=500, block=2000) or []:
                for event_id, fields in entries:
                    after = event_id
                    data = json.loads(fields["data"])
                    if "t" in data:
                        direct.append((time.time() - data["t"]) * 1000)
                        count += 1

    async def via_redis() -> None:
        client = aioredis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True,
                                         max_connections=conversations + 4)
        starts = {r: bus.publish(r, "answer.delta", {"text": "mark"}) for r in replies}
        publisher = threading.Thread(target=publish, args=("d",))
        publisher.start()
        await asyncio.gather(*(follow_redis(client, bus.key(r), starts[r]) for r in replies))
        publisher.join()
        await client.aclose()

    asyncio.run(via_redis())

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
    return seen, direct, bare


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paint-runs", type=int, default=5)
    parser.add_argument("--conversations", type=int, default=20)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--holdback", type=int, default=None,
                        help="what-if: the output stage's hold-back in characters (product default 200)")
    parser.add_argument("--question", default="What is compound interest?",
                        help="the customer's message of the first-paint runs (the answer's first words decide "
                             "how soon the output stage can release them)")
    parser.add_argument("--only", choices=("paint", "relay"), default=None, help="run one of the two parts")
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help="release policies compared in the first-paint runs (comma-separated)")
    parser.add_argument("--quantize", choices=("int8", "none"), default=None,
                        help="VERITY_ENGINE_QUANTIZE for the R1 engine (default: the product's default)")
    args = parser.parse_args()

    run = f"chatbench{os.getpid()}"
    db_name = f"verity_{run}"
    env = _environment(run, db_name, args.max_tokens, args.quantize)
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

        rows = []
        if args.only != "relay":
            paint = first_paint(base, cookie, user, args.paint_runs, args.holdback, args.question,
                                tuple(args.policies.split(",")))
            hold = f", hold-back {args.holdback}" if args.holdback is not None else ""
            for policy, (gaps, held, painted, staged, token_gaps, _) in paint.items():
                rows += [
                    (f"[{policy}] engine first token -> painted ({len(gaps)} runs{hold})", gaps,
                     "< 50 p95" if policy == "mid-word" else ""),
                    ("  of which: engine -> first answer.delta published", held, ""),
                    ("  of which: published -> browser painted", painted, ""),
                    ("  engine chunk that freed the first words -> published", staged, ""),
                    ("  engine token -> next token (decode pace, for scale)", token_gaps, ""),
                ]
        if args.only != "paint":
            relayed, direct, bare = relay_overhead(base, cookie, user, args.conversations, args.events)
            rows += [
                (f"publish -> SSE client, {args.conversations} concurrent ({len(relayed)} ev)", relayed, "< 2 p95"),
                (f"publish -> asyncio XREAD, {args.conversations} concurrent ({len(direct)} ev)", direct, ""),
                (f"publish -> one blocking XREAD follower ({len(bare)} ev)", bare, ""),
            ]
        if args.only != "relay":
            from apps.inference.services import engine_version

            engine = f"R1 engine {engine_version('r1')}"
        else:
            engine = f"R1 weights {settings.VERITY_ENGINE_DTYPE}, quantize {settings.VERITY_ENGINE_QUANTIZE}"
        print(f"\nchat streaming, services mode (Redis Streams + uvicorn), {engine}, "
              f"{os.cpu_count()} CPUs, {platform.machine()}, load average {os.getloadavg()[0]:.1f}")
        print(f"{'measure':66} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'target':>10}")
        print(f"{'-' * 66} {'-' * 8} {'-' * 8} {'-' * 8} {'-' * 10}")
        for name, values, target in rows:
            print(f"{name:66} {pct(values, 0.5):8.2f} {pct(values, 0.95):8.2f} {max(values):8.2f} {target:>10}")
        if args.only != "relay":
            for policy, result in paint.items():
                released = sorted(set(result[5]))
                print(f"[{policy}] first answer.delta, (engine chunks arrived, text) over {len(result[5])} runs: "
                      + ", ".join(f"{result[5].count(r)}x {r}" for r in released))
        if args.only != "paint":
            overhead = [pct(relayed, q) - pct(direct, q) for q in (0.5, 0.95)]
            print(f"SSE relay overhead beyond Redis at the same concurrency: p50 {overhead[0]:.2f} ms, "
                  f"p95 {overhead[1]:.2f} ms")
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
