"""Stream buses (memory and Redis Streams) and the SSE relay: order, resume with Last-Event-ID, heartbeats."""

from __future__ import annotations

import threading
import time

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from apps.accounts.services import demo_tenant_get
from apps.conversations.services import conversation_create, turn_submit
from apps.conversations.streams import MemoryStreamBus, RedisStreamBus, stream_bus
from apps.core.errors import ApplicationError


@pytest.fixture(params=["memory", "redis"])
def bus(request, settings):
    if request.param == "memory":
        return MemoryStreamBus(ttl_s=60)
    return RedisStreamBus(settings.REDIS_URL, settings.VERITY_STREAM_PREFIX + "bus:", 60)


def test_bus_reads_in_order_and_resumes_after_an_id(bus):
    ids = [bus.publish("r1", "answer.delta", {"text": t}) for t in ("a", "b", "c")]
    assert [d["text"] for _, _, d in bus.read("r1", None, 0)] == ["a", "b", "c"]
    assert [d["text"] for _, _, d in bus.read("r1", ids[0], 0)] == ["b", "c"]
    assert bus.read("r1", ids[-1], 50) == []
    assert bus.read("other", None, 10) == []


def test_bus_blocking_read_wakes_on_publish(bus):
    timer = threading.Timer(0.2, lambda: bus.publish("r2", "done", {"message_id": "r2"}))
    timer.start()
    started = time.monotonic()
    events = bus.read("r2", None, 5000)
    assert [e[1] for e in events] == ["done"] and time.monotonic() - started < 4


def test_bus_refuses_unknown_events_and_bad_ids(bus):
    with pytest.raises(ValueError):
        bus.publish("r3", "answer.delta.typo", {})
    with pytest.raises(ApplicationError):
        bus.read("r3", "'; DROP", 0)


@pytest.fixture
def reply(db, packs, customer):
    conversation = conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")
    return turn_submit(conversation=conversation, text="What is a dividend?").reply


def _frames(response) -> list[tuple[str, str]]:
    async def collect() -> bytes:  # the view streams from an async generator, as under uvicorn
        return b"".join([chunk async for chunk in response.streaming_content])

    body = async_to_sync(collect)().decode()
    frames = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":"))
        if "event" in lines:
            frames.append((lines["id"], lines["event"]))
        elif block.startswith(": heartbeat"):
            frames.append(("", "heartbeat"))
    return frames


@pytest.mark.django_db
def test_sse_relays_events_and_resumes_from_last_event_id(reply, customer_client):
    bus = stream_bus()
    ids = [bus.publish(str(reply.id), "answer.delta", {"text": t}) for t in ("Div", "idend")]
    done = bus.publish(str(reply.id), "done", {"message_id": str(reply.id), "content": "Dividend"})
    url = f"/chat/api/replies/{reply.id}/events"
    response = customer_client.get(url)
    assert response["Content-Type"] == "text/event-stream" and response["Cache-Control"].startswith("no-cache")
    assert _frames(response) == [(ids[0], "answer.delta"), (ids[1], "answer.delta"), (done, "done")]
    resumed = customer_client.get(url, HTTP_LAST_EVENT_ID=ids[0])
    assert _frames(resumed) == [(ids[1], "answer.delta"), (done, "done")]


@pytest.mark.django_db
def test_sse_sends_heartbeats_while_waiting(reply, customer_client, settings):
    settings.VERITY_SSE_HEARTBEAT_S = 1
    bus = stream_bus()
    timer = threading.Timer(2.5, lambda: bus.publish(str(reply.id), "done", {"message_id": str(reply.id)}))
    timer.start()
    frames = _frames(customer_client.get(f"/chat/api/replies/{reply.id}/events"))
    assert ("", "heartbeat") in frames and frames[-1][1] == "done"


@pytest.mark.django_db
def test_sse_refuses_strangers_and_bad_ids(reply, customer_client):
    assert Client().get(f"/chat/api/replies/{reply.id}/events").status_code == 401
    response = customer_client.get(f"/chat/api/replies/{reply.id}/events", HTTP_LAST_EVENT_ID="nonsense")
    assert response.status_code == 400 and response.json()["error"]["field"] == "Last-Event-ID"
    assert customer_client.get("/chat/api/replies/00000000-0000-0000-0000-000000000000/events").status_code == 404
