"""apps.core.singleton: the factory runs once per process even when threads race; reset forgets or
replaces the object (tests switching between embedded and services mode rely on it)."""

from __future__ import annotations

import threading
import time

from apps.core.singleton import process_singleton


def test_factory_runs_once_when_threads_race_and_reset_forgets_or_replaces():
    calls: list[int] = []

    @process_singleton
    def thing() -> object:
        """A slow factory."""
        calls.append(1)
        time.sleep(0.2)  # every thread arrives while the first one builds
        return object()

    start = threading.Barrier(8)
    got: list[object] = []

    def use() -> None:
        start.wait()
        got.append(thing())

    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(g) for g in got}) == 1 and thing() is got[0]
    assert thing.__doc__ == "A slow factory." and thing.__name__ == "thing"
    thing.reset()
    assert thing() is not got[0] and len(calls) == 2
    replacement = object()
    thing.reset(replacement)
    assert thing() is replacement and len(calls) == 2
