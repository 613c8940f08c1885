"""Preallocated key/value cache for the R1 profile.

One contiguous buffer per layer for keys and values, sized once for the longest sequence the
request may reach, so a decode step writes one slot in place instead of concatenating tensors (which
would copy the whole history every token). The model calls `update` per layer and `advance` once per
forward pass; everything else (how long a sequence may grow, when to reset) belongs to the engine.

The continuous-batching scheduler uses one of these per sequence while its prompt is prefilled
(chunk by chunk); decoding sequences then share block_manager.DecodePool, whose `BatchView` has the
same surface plus a per-row `attention_mask`.

Both may store keys/values in a narrower dtype than the activations (`Engine.load(kv_dtype=...)`,
bfloat16 for int8 engines): `update` rounds what it stores and returns the stored tensors, and the
model widens them before attention, so every token attends to the same rounded keys/values whether
they were computed in this pass, earlier, or copied from the prefix cache.
"""

from __future__ import annotations

import torch

from model_core.config import ModelConfig


class KVCache:
    """Keys and values of `batch` sequences of up to `max_len` tokens, for every layer."""

    attention_mask = None  # every row has the same length: the model's causal masking suffices
    row_spans = None  # likewise: no per-row key spans (block_manager.BatchView has them)

    def __init__(self, config: ModelConfig, max_len: int, *, batch: int = 1, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> None:
        if max_len <= 0:
            raise ValueError(f"max_len must be positive, got {max_len}")
        shape = (config.num_layers, batch, config.num_kv_heads, max_len, config.head_dim)
        self.keys = torch.empty(shape, dtype=dtype, device=device)
        self.values = torch.empty(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # tokens already stored (same for every row in this simple layout)

    @property
    def nbytes(self) -> int:
        return self.keys.numel() * self.keys.element_size() * 2

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v [B,Hkv,T,D] after the cached tokens; return all keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} tokens; cannot store {end}")
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, tokens: int) -> None:
        self.length += tokens

    def reset(self) -> None:
        self.length = 0
