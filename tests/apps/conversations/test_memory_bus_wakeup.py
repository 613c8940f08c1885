"""MemoryStreamBus.aread (embedded mode's SSE relay) is woken by publish from the worker thread rather
than polling, and leaves no waiter behind whether it returns, times out or is cancelled. Coroutines run
on a fresh thread with its own loop: an earlier test (Playwright's sync API) may leave an event loop
running in the test thread, where neither asyncio.run nor async_to_sync may start another."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any

from apps.conversations.streams import MemoryStreamBus


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """`asyncio.run(coroutine)` on a thread of its own; its result, or its exception re-raised."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = asyncio.run(coroutine)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            out["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out["result"]


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

    events, woke = run(follow())
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

    assert run(scenario()) == []
    assert bus._waiters == {}
    bus.publish("r1", "done", {})  # a reply with no reader: publish needs no waiter
    assert [e for _, e, _ in run(bus.aread("r1", None, 0))] == ["done"]
