"""The decode pool: keys and values of every decoding sequence, one row each, for one batched forward.

Layout: keys/values [layers, rows, kv_heads, capacity, head_dim]. The decoding sequences always occupy
rows 0..n-1 (a retiring sequence's row is filled by moving the last row into it), so a decode step
reads the pool as a plain slice `[:, :n, :, :longest]` with no gather of the history. Rows of
different lengths are told apart by a boolean attention mask (key j of row r is visible iff
j <= length_r): the "dynamic attention mask" of the R1 profile. Masked positions must hold finite
numbers (the kernel multiplies their zero weights by the values), so the memory is zeroed when it is
allocated and a freed row only ever holds an earlier sequence's finite keys/values. Zeroed memory is
resident memory, so nothing is allocated ahead of need: a joining sequence reserves its prompt plus what
it may generate (up to RESERVE tokens), rows double only when more are needed, and a sequence that
outlives its reservation grows the pool by at least GROW_STEP (a copy). The pool is released when the
last sequence leaves, so an idle engine holds no KV memory.

`BatchView` is the cache object the model sees during a decode step (the same `update` / `advance`
/ `length` / `attention_mask` surface as kv_cache.KVCache).
"""

from __future__ import annotations

import torch

from model_core.config import ModelConfig
from model_core.kv_cache import KVCache
from model_core.sequence import Sequence

ALIGN = 64  # capacity is a multiple of this
RESERVE = 1024  # generation tokens reserved when a sequence joins; beyond it the pool grows (one copy)
GROW_STEP = 256  # the least a growth adds, so a sequence beyond its reservation copies rarely


class BatchView:
    """One decode step over rows 0..n-1: each row appends one token at its own position."""

    def __init__(self, pool: DecodePool, lengths: torch.Tensor, kv_lens: list[int]) -> None:
        self.pool = pool
        self.lengths = lengths  # [n] tokens stored per row before this step = the new token's position
        self.rows = torch.arange(lengths.shape[0], device=lengths.device)
        longest = max(kv_lens)
        self.span = longest + 1  # keys the step reads: up to and including the longest row's new token
        self.length = longest  # `past` for the model; only meaningful (and only used) when n == 1
        n = lengths.shape[0]
        # keys each row reads (its own, up to its new token): model.rowwise_decode_attention attends to
        # exactly these, so a row's output does not depend on the rows beside it
        self.row_spans: list[int] | None = None
        if n == 1:
            self.attention_mask = None  # one row: the plain fused decode path, nothing to hide
        else:
            self.row_spans = [n_kv + 1 for n_kv in kv_lens]
            keys = torch.arange(self.span, device=lengths.device)
            self.attention_mask = (keys[None, :] <= lengths[:, None]).view(n, 1, 1, self.span)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k/v [n,Hkv,1,D] at each row's position; return keys/values [n,Hkv,span,D]."""
        n = k.shape[0]
        keys, values = self.pool.keys[layer], self.pool.values[layer]
        if n == 1:  # one row at position `length`: a plain slice write, no index tensors
            keys[0, :, self.length] = k[0, :, 0]
            values[0, :, self.length] = v[0, :, 0]
        else:
            # index_put_ does not cast: a pool stored in a narrower dtype takes k/v rounded to it
            keys[self.rows, :, self.lengths] = k[:, :, 0].to(keys.dtype)
            values[self.rows, :, self.lengths] = v[:, :, 0].to(values.dtype)
        return keys[:n, :, : self.span], values[:n, :, : self.span]

    def advance(self, tokens: int) -> None:
        pass  # the scheduler advances each sequence's own length after the step


class DecodePool:
    """Rows of KV memory for the decoding sequences, kept dense at the front."""

    def __init__(self, config: ModelConfig, *, max_rows: int, max_len: int, dtype: torch.dtype,
                 device: torch.device) -> None:
        self.config = config
        self.max_rows, self.max_len = max_rows, max_len
        self.dtype, self.device = dtype, device
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.seqs: list[Sequence] = []

    @property
    def nbytes(self) -> int:
        return 0 if self.keys is None else 2 * self.keys.numel() * self.keys.element_size()

    @property
    def capacity(self) -> int:
        return 0 if self.keys is None else self.keys.shape[3]

    def __len__(self) -> int:
        return len(self.seqs)

    def _ensure(self, rows: int, length: int) -> None:
        """Make room for `rows` rows of `length` tokens, keeping what is stored.

        Rows double only when more rows are needed (a burst of admissions copies log2(n) times, not n);
        capacity becomes `length` rounded up to ALIGN, at least GROW_STEP more than before when it grows
        again for a sequence that outlived its reservation. Never a doubling of what is not needed: the
        memory is zeroed, so every allocated byte is resident."""
        have_rows = 0 if self.keys is None else self.keys.shape[1]
        if rows <= have_rows and length <= self.capacity:
            return
        new_rows = have_rows if rows <= have_rows else min(self.max_rows, max(rows, 2 * have_rows, 1))
        new_len = self.capacity
        if length > self.capacity:
            grown = length if self.capacity == 0 else max(length, self.capacity + GROW_STEP)
            new_len = min(self.max_len, -(-grown // ALIGN) * ALIGN)
        c = self.config
        shape = (c.num_layers, new_rows, c.num_kv_heads, new_len, c.head_dim)
        # Zeros, not torch.empty: a shorter row's masked positions are still read by the fused kernel,
        # and 0 * NaN = NaN, so recycled memory holding a NaN bit pattern would poison that row's output.
        keys = torch.zeros(shape, dtype=self.dtype, device=self.device)
        values = torch.zeros(shape, dtype=self.dtype, device=self.device)
        for s in self.seqs:  # copy only what each row holds, not the garbage tail
            keys[:, s.row, :, : s.kv_len] = self.keys[:, s.row, :, : s.kv_len]
            values[:, s.row, :, : s.kv_len] = self.values[:, s.row, :, : s.kv_len]
        self.keys, self.values = keys, values

    def add(self, seq: Sequence, staging: KVCache) -> None:
        """Move a prefilled sequence's keys/values into the next free row."""
        if len(self.seqs) >= self.max_rows:
            raise RuntimeError("decode pool is full")  # the scheduler admits at most max_rows
        self._ensure(len(self.seqs) + 1, self.reservation(seq))
        seq.row = len(self.seqs)
        self.keys[:, seq.row, :, : seq.kv_len] = staging.keys[:, 0, :, : seq.kv_len]
        self.values[:, seq.row, :, : seq.kv_len] = staging.values[:, 0, :, : seq.kv_len]
        self.seqs.append(seq)

    def reservation(self, seq: Sequence) -> int:
        """Tokens a joining sequence may reach: its cache, its next token and what it may still generate
        (up to RESERVE), so decoding it never stops for a growth copy unless it outlives RESERVE."""
        left = max(0, seq.budget - len(seq.generated))
        return min(self.max_len, seq.kv_len + 1 + min(left, RESERVE))

    def remove(self, seq: Sequence) -> None:
        """Free a row; the last row moves into the hole so rows stay dense."""
        hole, last = seq.row, self.seqs[-1]
        if last is not seq:
            n = last.kv_len
            self.keys[:, hole, :, :n] = self.keys[:, last.row, :, :n]
            self.values[:, hole, :, :n] = self.values[:, last.row, :, :n]
            last.row = hole
            self.seqs[hole] = last
        self.seqs.pop()
        seq.row = -1
        if not self.seqs:
            self.keys = self.values = None  # idle: give the memory back

    def row_kv(self, seq: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values [layers, Hkv, kv_len, D] of one row (views, for the prefix cache)."""
        return self.keys[:, seq.row, :, : seq.kv_len], self.values[:, seq.row, :, : seq.kv_len]

    def view(self) -> tuple[BatchView, torch.Tensor]:
        """The cache object and the positions [n,1] for one decode step over every row."""
        for s in self.seqs:
            if s.kv_len + 1 > self.capacity:
                self._ensure(len(self.seqs), s.kv_len + 1)
        kv_lens = [s.kv_len for s in self.seqs]
        lengths = torch.tensor(kv_lens, device=self.device)
        return BatchView(self, lengths, kv_lens), lengths[:, None]
