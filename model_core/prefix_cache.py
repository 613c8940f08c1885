"""Prefix cache: keys/values of token blocks, keyed by a hash chained over the whole prefix.

A prompt is cut into blocks of `block_size` tokens; block i's key is hash(key of block i-1, its
tokens), so a key names the entire prefix up to the end of that block and two prompts share a key
only when they share every token before it (the tokens are stored too and compared on a hit, so a
hash collision cannot serve wrong keys/values). A new request walks its blocks from the start and
takes the longest run found: those tokens are copied into its prefill cache instead of recomputed.

Eviction is least-recently-used under a byte budget. When a chain is used, its blocks are refreshed
deepest first, so the root of a shared prefix is always the most recent and leaves go first (an
evicted parent would make its children unreachable).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class Block:
    tokens: tuple[int, ...]
    keys: torch.Tensor  # [layers, Hkv, block_size, D]
    values: torch.Tensor

    @property
    def nbytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()


class PrefixCache:
    """LRU map from chained prefix hashes to KV blocks, with hit/miss counters (in blocks)."""

    def __init__(self, *, block_size: int = 32, budget_bytes: int = 512 * 2**20) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if budget_bytes < 0:
            raise ValueError(f"budget_bytes must be >= 0, got {budget_bytes}")
        self.block_size = block_size
        self.budget_bytes = budget_bytes
        self._blocks: OrderedDict[int, Block] = OrderedDict()
        self._lock = threading.Lock()  # metrics() reads from other threads
        self.nbytes = 0
        self.hits = self.misses = self.evictions = 0

    def _keys(self, tokens: list[int], blocks: int) -> list[int]:
        keys, parent = [], 0
        for i in range(blocks):
            parent = hash((parent, tuple(tokens[i * self.block_size:(i + 1) * self.block_size])))
            keys.append(parent)
        return keys

    def lookup(self, tokens: list[int], limit: int) -> list[Block]:
        """The cached blocks of the longest cached prefix of `tokens`, covering at most `limit` tokens."""
        wanted = min(limit, len(tokens)) // self.block_size
        found: list[tuple[int, Block]] = []
        with self._lock:
            for i, key in enumerate(self._keys(tokens, wanted)):
                block = self._blocks.get(key)
                if block is None or block.tokens != tuple(tokens[i * self.block_size:(i + 1) * self.block_size]):
                    break
                found.append((key, block))
            self.hits += len(found)
            self.misses += wanted - len(found)
            for key, _ in reversed(found):
                self._blocks.move_to_end(key)
        return [b for _, b in found]

    def insert(self, tokens: list[int], keys: torch.Tensor, values: torch.Tensor) -> int:
        """Store every full block of `tokens` not cached yet, from keys/values [layers, Hkv, T>=len, D];
        returns how many blocks were added. Blocks are copies: the source may be overwritten later."""
        n = min(len(tokens), keys.shape[2]) // self.block_size
        if n == 0 or self.budget_bytes == 0:
            return 0
        bs = self.block_size
        added = 0
        with self._lock:
            chain = self._keys(tokens, n)
            for i, key in enumerate(chain):
                if key in self._blocks:
                    continue
                block = Block(tuple(tokens[i * bs:(i + 1) * bs]), keys[:, :, i * bs:(i + 1) * bs].clone(),
                              values[:, :, i * bs:(i + 1) * bs].clone())
                self._blocks[key] = block
                self.nbytes += block.nbytes
                added += 1
            for key in reversed(chain):
                if key in self._blocks:
                    self._blocks.move_to_end(key)
            while self.nbytes > self.budget_bytes and self._blocks:
                _, old = self._blocks.popitem(last=False)
                self.nbytes -= old.nbytes
                self.evictions += 1
        return added

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def stats(self) -> dict[str, int | float]:
        with self._lock:
            looked = self.hits + self.misses
            return {"blocks": len(self._blocks), "bytes": self.nbytes, "budget_bytes": self.budget_bytes,
                    "hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                    "hit_rate": self.hits / looked if looked else 0.0, "block_size": self.block_size}
