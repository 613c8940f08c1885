"""The SSE endpoint under a real ASGI server (uvicorn, services mode): frames arrive while the reply is
still being produced, and a reconnect with Last-Event-ID resumes exactly after the last frame seen."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.test import Client

from apps.accounts.services import demo_tenant_get
from apps.conversations.services import conversation_create, turn_submit
from apps.conversations.streams import stream_bus
from tests.conftest import subprocess_env

REPO = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    log = (tmp_path / "uvicorn.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "uvicorn"), "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port)], cwd=REPO, env=subprocess_env(VERITY_SSE_HEARTBEAT_S="1"), stdout=log,
        stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code in (200, 503):
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        process.kill()
        pytest.fail((tmp_path / "uvicorn.log").read_text()[-3000:])
    yield base
    process.terminate()
    process.wait(timeout=20)


def test_sse_under_uvicorn_streams_live_and_resumes(server, packs, customer):
    conversation = conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")
    reply_id = str(turn_submit(conversation=conversation, text="What is a stock split?").reply.id)
    client = Client()
    client.force_login(customer)
    cookies = {"sessionid": client.cookies["sessionid"].value}
    bus = stream_bus()
    first = bus.publish(reply_id, "answer.delta", {"text": "A stock split "})

    def later() -> None:
        time.sleep(2.5)  # long enough for a heartbeat; the client must already hold the first frame
        bus.publish(reply_id, "answer.delta", {"text": "divides each share."})
        bus.publish(reply_id, "done", {"message_id": reply_id, "content": "A stock split divides each share."})

    threading.Thread(target=later, daemon=True).start()
    seen, started = [], time.monotonic()
    with httpx.stream("GET", f"{server}/chat/api/replies/{reply_id}/events", cookies=cookies, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line:
                seen.append((round(time.monotonic() - started, 1), line))
            if line.startswith("event: done"):
                break
    lines = [line for _, line in seen]
    assert f"id: {first}" in lines and ": heartbeat" in lines
    first_at = next(t for t, line in seen if line == f"id: {first}")
    done_at = next(t for t, line in seen if line == "event: done")
    assert done_at - first_at >= 2  # the first frame was delivered live, not buffered until the end

    resumed = httpx.get(f"{server}/chat/api/replies/{reply_id}/events", cookies=cookies,
                        headers={"Last-Event-ID": first}, timeout=30).text
    assert f"id: {first}\n" not in resumed and '{"text": "A stock split "}' not in resumed and "divides each share." in resumed and "event: done" in resumed
