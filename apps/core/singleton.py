"""One lazily built object per process, shared by every thread (the stream bus, the rate limiter, the
MiniLM encoder, Presidio, the name gazetteer): built on first use under a lock, at most once, then read
without locking. `reset(value=None)` forgets it, or replaces it (tests switching modes)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessSingleton(Generic[T]):
    """Wraps a zero-argument factory; calling the wrapper returns the one built object."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._value: T | None = None
        functools.update_wrapper(self, factory)

    def __call__(self) -> T:
        value = self._value
        if value is None:
            with self._lock:  # double-checked: the factory runs once even when threads race
                value = self._value
                if value is None:
                    value = self._value = self._factory()
        return value

    def reset(self, value: T | None = None) -> None:
        with self._lock:
            self._value = value


def process_singleton(factory: Callable[[], T]) -> ProcessSingleton[T]:
    """Decorator form: `@process_singleton def stream_bus() -> StreamBus: ...`."""
    return ProcessSingleton(factory)
