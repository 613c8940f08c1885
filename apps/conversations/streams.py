"""Per-reply event streams: MemoryStreamBus (embedded) and RedisStreamBus (services), one interface.

Events of a reply (`reasoning.delta`, `answer.delta`, `retract`, `context_trimmed`, `done`, `error`)
are appended to a stream keyed by the reply id and read from any point, so an SSE client that
reconnects with `Last-Event-ID` gets exactly what it missed. Event ids look like Redis Stream ids
(`<ms>-<seq>` in Redis, `<n>-0` in memory); both compare in publication order. Streams expire after
VERITY_STREAM_TTL_S; the stored message remains the record.

A conversation has a stream of its own (`conversation:<id>`) for what happens outside a reply: an
expert's `human.message`, a `handoff.requested`. Stop is a flag next to the stream (`cancel_request`),
checked by the generation loop before each token is published.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import weakref
from contextlib import suppress
from typing import Any, Protocol

from django.conf import settings

from apps.core.errors import ApplicationError, ErrorCode
from apps.core.singleton import process_singleton

Event = tuple[str, str, dict[str, Any]]
# `human.message` goes on a conversation's key (`conversation:<id>`): an expert answered from the console.
EVENT_NAMES = {"reasoning.delta", "answer.delta", "retract", "context_trimmed", "escalation", "done", "error",
               "human.message", "handoff.requested", "progress"}
TERMINAL_EVENTS = {"done", "error"}
_EVENT_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def event_id_check(after: str | None) -> str | None:
    """Validate a client-supplied Last-Event-ID; a malformed one is a 400, not a server error."""
    if after is None or after == "":
        return None
    if not _EVENT_ID.match(after):
        raise ApplicationError(ErrorCode.VALIDATION, f"Bad Last-Event-ID {after[:40]!r}.", field="Last-Event-ID")
    return after


def _key(event_id: str) -> tuple[int, int]:
    ms, seq = event_id.split("-")
    return int(ms), int(seq)


class StreamBus(Protocol):
    def publish(self, reply_id: str, event: str, data: dict[str, Any]) -> str: ...

    def read(self, reply_id: str, after: str | None, block_ms: int) -> list[Event]: ...

    async def aread(self, reply_id: str, after: str | None, block_ms: int) -> list[Event]: ...

    def cancel_request(self, reply_id: str) -> None: ...

    def cancel_requested(self, reply_id: str) -> bool: ...

    def delete(self, reply_id: str) -> None: ...


def conversation_stream_key(conversation_id: Any) -> str:
    """The stream of a conversation's own events (a `reply_id` for the bus, never a real reply id)."""
    return f"conversation:{conversation_id}"


class MemoryStreamBus:
    """In-process streams for the embedded mode (the worker thread and the server share a process)."""

    def __init__(self, ttl_s: int = 3600) -> None:
        self._streams: dict[str, tuple[float, list[Event]]] = {}
        self._cond = threading.Condition()
        self._ttl = ttl_s
        self._cancelled: dict[str, float] = {}
        # aread's waiters per reply: (its event loop, an asyncio.Event that publish sets from any thread)
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def cancel_request(self, reply_id: str) -> None:
        with self._cond:
            self._cancelled[str(reply_id)] = time.monotonic()

    def cancel_requested(self, reply_id: str) -> bool:
        return str(reply_id) in self._cancelled

    def publish(self, reply_id: str, event: str, data: dict[str, Any]) -> str:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown stream event {event!r}")
        with self._cond:
            self._expire()
            _, events = self._streams.get(str(reply_id), (0.0, []))
            event_id = f"{len(events) + 1}-0"
            events.append((event_id, event, json.loads(json.dumps(data))))
            self._streams[str(reply_id)] = (time.monotonic(), events)
            self._cond.notify_all()
            waiters = list(self._waiters.get(str(reply_id), ()))
        for loop, woken in waiters:
            with suppress(RuntimeError):  # that loop has closed: its reader is gone
                loop.call_soon_threadsafe(woken.set)
        return event_id

    def _after(self, reply_id: str, after: str | None) -> list[Event]:
        _, events = self._streams.get(str(reply_id), (0.0, []))
        start = _key(after)[0] if after else 0
        return list(events[start:])

    def read(self, reply_id: str, after: str | None, block_ms: int) -> list[Event]:
        after = event_id_check(after)
        deadline = time.monotonic() + block_ms / 1000
        with self._cond:
            while True:
                found = self._after(reply_id, after)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._cond.wait(remaining)

    async def aread(self, reply_id: str, after: str | None, block_ms: int) -> list[Event]:
        # No blocking wait on the event loop: publish wakes this reader through its loop
        # (call_soon_threadsafe), so an event leaves as soon as it is published rather than at a poll.
        after = event_id_check(after)
        deadline = time.monotonic() + block_ms / 1000
        loop = asyncio.get_running_loop()
        while True:
            waiter = (loop, asyncio.Event())
            with self._cond:  # look and register under one lock: a publish in between still wakes us
                found = self._after(reply_id, after)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._waiters.setdefault(str(reply_id), set()).add(waiter)
            try:
                await asyncio.wait_for(waiter[1].wait(), remaining)
            except TimeoutError:
                pass
            finally:
                with self._cond:
                    waiting = self._waiters.get(str(reply_id))
                    if waiting is not None:
                        waiting.discard(waiter)
                        if not waiting:
                            del self._waiters[str(reply_id)]

    def delete(self, reply_id: str) -> None:
        with self._cond:
            self._streams.pop(str(reply_id), None)
            self._cancelled.pop(str(reply_id), None)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self._ttl
        for reply_id in [rid for rid, (touched, _) in self._streams.items() if touched < cutoff]:
            del self._streams[reply_id]
        for reply_id in [rid for rid, when in self._cancelled.items() if when < cutoff]:
            del self._cancelled[reply_id]


class RedisStreamBus:
    """Redis Streams: XADD per event (with TTL on the key), XREAD BLOCK to follow."""

    def __init__(self, url: str, prefix: str, ttl_s: int) -> None:
        import redis

        self._url = url
        self._prefix = prefix
        self._ttl = ttl_s
        self._client = redis.Redis.from_url(url, decode_responses=True)
        # One asyncio client per event loop (a client is bound to the loop it connected on).
        self._async_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def key(self, reply_id: str) -> str:
        return f"{self._prefix}reply:{reply_id}"

    def publish(self, reply_id: str, event: str, data: dict[str, Any]) -> str:
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown stream event {event!r}")
        key = self.key(str(reply_id))
        pipe = self._client.pipeline(transaction=True)
        pipe.xadd(key, {"event": event, "data": json.dumps(data)})
        pipe.expire(key, self._ttl)
        event_id, _ = pipe.execute()
        return event_id

    @staticmethod
    def _decode(response: Any) -> list[Event]:
        out: list[Event] = []
        for _key_name, entries in response or []:
            for event_id, fields in entries:
                out.append((event_id, fields["event"], json.loads(fields["data"])))
        return out

    def read(self, reply_id: str, after: str | None, block_ms: int) -> list[Event]:
        after = event_id_check(after) or "0-0"
        response = self._client.xread({self.key(str(reply_id)): after}, count=500, block=block_ms or None)
        return self._decode(response)

    async def aread(self, reply_id: str, after: str | None, block_ms: int) -> list[Event]:
        import redis.asyncio as aioredis

        after = event_id_check(after) or "0-0"
        loop = asyncio.get_running_loop()
        client = self._async_clients.get(loop)
        if client is None:
            client = aioredis.Redis.from_url(self._url, decode_responses=True)
            self._async_clients[loop] = client
        response = await client.xread({self.key(str(reply_id)): after}, count=500, block=block_ms or None)
        return self._decode(response)

    def cancel_request(self, reply_id: str) -> None:
        # A flag any worker process can see; it outlives the generation by the stream's TTL at most.
        self._client.set(f"{self._prefix}cancel:{reply_id}", "1", ex=self._ttl)

    def cancel_requested(self, reply_id: str) -> bool:
        return bool(self._client.exists(f"{self._prefix}cancel:{reply_id}"))

    def delete(self, reply_id: str) -> None:
        self._client.delete(self.key(str(reply_id)), f"{self._prefix}cancel:{reply_id}")


@process_singleton
def stream_bus() -> StreamBus:
    """The process's bus: memory in embedded mode, Redis Streams in services mode."""
    if settings.VERITY_MODE == "services":
        return RedisStreamBus(settings.REDIS_URL, settings.VERITY_STREAM_PREFIX, settings.VERITY_STREAM_TTL_S)
    return MemoryStreamBus(settings.VERITY_STREAM_TTL_S)


def stream_bus_reset() -> None:
    """Forget the process's bus (tests switch modes)."""
    stream_bus.reset()


def events_follow(reply_id: str, *, after: str | None = None, timeout_s: float = 600.0,
                  block_ms: int = 1000) -> Any:
    """Yield a reply's events until `done`/`error` or the timeout (for `manage.py ask` and tests)."""
    bus = stream_bus()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for event_id, event, data in bus.read(reply_id, after, block_ms):
            after = event_id
            yield event_id, event, data
            if event in TERMINAL_EVENTS:
                return
    raise TimeoutError(f"reply {reply_id} produced no terminal event within {timeout_s:.0f}s")
