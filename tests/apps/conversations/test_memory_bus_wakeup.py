"""MemoryStreamBus.aread (embedded mode's SSE relay) is woken by publish from the worker thread rather
than polling, and leaves no waiter behind whether it returns, times out or is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

from apps.conversations.streams import MemoryStreamBus


def test_a_publish_from_another_thread_wakes_the_reader_at_once():
    bus = MemoryStreamBus(ttl_s=60)
    published: dict[str, float] = {}

    def worker() -> None:
        time.sleep(0.2)
        published["t"] = time.monotonic()
        bus.publish("r1", "answer.delta", {"text": "Compound "})

    async def follow() -> tuple[list, float]:
        thread = threading.Thread(target=worker)
        thread.start()
        events = await bus.aread("r1", None, 10_000)
        woke = time.monotonic()
        thread.join()
        return events, woke

    events, woke = asyncio.run(follow())
    assert [(e, d["text"]) for _, e, d in events] == [("answer.delta", "Compound ")]
    assert woke - published["t"] < 1.0  # woken by the publish, not by the 10 s block running out
    assert bus._waiters == {}


def test_a_publish_to_another_reply_does_not_end_the_wait_and_timeouts_and_cancels_clean_up():
    bus = MemoryStreamBus(ttl_s=60)

    async def scenario() -> list:
        reader = asyncio.ensure_future(bus.aread("r1", None, 300))
        await asyncio.sleep(0.05)
        assert set(bus._waiters) == {"r1"}  # waiting on a wake-up, not polling
        bus.publish("r2", "answer.delta", {"text": "elsewhere"})
        timed_out = await reader
        cancelled = asyncio.ensure_future(bus.aread("r1", None, 10_000))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        return timed_out

    assert asyncio.run(scenario()) == []
    assert bus._waiters == {}
    bus.publish("r1", "done", {})  # a reply with no reader: publish needs no waiter
    assert [e for _, e, _ in asyncio.run(bus.aread("r1", None, 0))] == ["done"]
