"""One request inside the continuous-batching scheduler: its tokens, its sampler and its output queue.

A `Sequence` moves WAITING -> PREFILL -> DECODE -> FINISHED. While it prefills it owns a private
`KVCache` (filled chunk by chunk, possibly starting from prefix-cache blocks); when the prompt is done
its keys/values move into a row of the shared decode pool (block_manager.DecodePool) and it joins the
batched decode. Everything here is touched by the scheduler's loop thread only, except `out` (a
thread-safe queue the caller reads) and the two stop signals (`cancel`, set by the caller's
threading.Event, and `abandoned`, set when the caller stops reading).
"""

from __future__ import annotations

import enum
import itertools
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from model_core.kv_cache import KVCache
from model_core.sampling import Sampler

_ids = itertools.count()


class Status(enum.Enum):
    WAITING = "waiting"
    PREFILL = "prefill"
    DECODE = "decode"
    FINISHED = "finished"


# What the loop thread puts on a sequence's queue: a sampled token id, or the end marker.
END = None


@dataclass(eq=False)
class Sequence:
    """A request's state from submission to its last token."""

    prompt: list[int]
    budget: int  # most tokens it may generate (max_tokens capped by the context window)
    sampler: Sampler | None  # None: plain greedy arg-max
    stop_ids: frozenset[int]
    cancel: threading.Event | None = None
    id: int = field(default_factory=lambda: next(_ids))
    status: Status = Status.WAITING
    generated: list[int] = field(default_factory=list)
    kv_len: int = 0  # tokens whose keys/values are stored (prefill cache or decode row)
    cached_len: int = 0  # prompt tokens that came from the prefix cache
    staging: KVCache | None = None  # the private cache used while prefilling
    row: int = -1  # row in the decode pool while decoding
    out: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    abandoned: threading.Event = field(default_factory=threading.Event)
    submitted_at: float = field(default_factory=time.perf_counter)
    finish_reason: str | None = None

    # ------------------------------------------------------------------ state read by the scheduler

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.generated

    @property
    def prefill_left(self) -> int:
        return len(self.prompt) - self.kv_len

    @property
    def stopped(self) -> bool:
        """The caller no longer wants tokens (cancel event set or the stream closed)."""
        return self.abandoned.is_set() or (self.cancel is not None and self.cancel.is_set())

    def next_input(self) -> int:
        """The token a decode step feeds: the last one sampled, at position kv_len."""
        return self.generated[-1]

    # ------------------------------------------------------------------ transitions (loop thread)

    def choose(self, logits: torch.Tensor) -> int:
        """Sample the next token from this sequence's own logits [vocab] with its own sampler."""
        if self.sampler is None:
            return int(logits.argmax())
        return self.sampler.sample(logits, self.generated)

    def append(self, token: int) -> bool:
        """Record and publish a token; True when the sequence is done (stop id or budget)."""
        self.generated.append(token)
        self.out.put(token)
        if token in self.stop_ids:
            self.finish_reason = "stop"
        elif len(self.generated) >= self.budget:
            self.finish_reason = "length"
        return self.finish_reason is not None

    def finish(self, reason: str | None = None) -> None:
        """Mark finished and wake the reader; idempotent."""
        if self.status is Status.FINISHED:
            return
        self.finish_reason = self.finish_reason or reason or "stop"
        self.status = Status.FINISHED
        self.staging = None
        self.out.put(END)

    # ------------------------------------------------------------------ the reader's side

    def stream_tokens(self) -> TokenStream:
        return TokenStream(self)


class TokenStream:
    """Iterator over a sequence's sampled ids for the caller's thread; closing it (or dropping a
    generator that reads it) tells the scheduler to retire the sequence at its next step."""

    def __init__(self, seq: Sequence) -> None:
        self.seq = seq

    def __iter__(self) -> TokenStream:
        return self

    def __next__(self) -> int:
        item = self.seq.out.get()
        if isinstance(item, BaseException):  # the loop thread failed; the caller sees why
            self.seq.out.put(END)
            raise RuntimeError("the engine's scheduler failed") from item
        if item is END:
            self.seq.out.put(END)  # stay exhausted for any later call
            raise StopIteration
        return item

    def close(self) -> None:
        self.seq.abandoned.set()
