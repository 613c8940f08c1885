"""Decode-friendly weight layout for the R1 profile (float32/bfloat16, not quantised).

Batch-1 decode is a chain of matrix-vector products that read every weight once per token, so its
speed is the speed at which the CPU streams weights. `nn.Linear` stores W as [out, in] and computes
x @ W^T; on this class of CPU (oneDNN/MKL sgemm, M = 1) that transposed read reaches ~17 GB/s, while
x @ Wt with Wt stored [in, out] contiguous reaches ~22 GB/s on the same matrices (measured on the
decode shapes of SmolLM2 and Qwen2.5-0.5B: benchmarks/engine.py, benchmarks/RESULTS.md).

`use_decode_layout(model)` swaps every `nn.Linear` of a loaded Transformer for `TransposedLinear`
holding only the transposed copy (the original is released, so memory does not grow). A tied output
head shares its matrix with the embedding: the embedding then becomes `TransposedEmbedding`, which
gathers columns of the same [hidden, vocab] tensor, so the tie holds without a second copy.

The swap is a pure layout change: same numbers, same summation per output element up to the order
the BLAS kernel chooses, checked against the untouched model in tests/model_core/test_fast.py and by
the parity tests (which load through Engine.load).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model_core.model import Transformer


class TransposedLinear(nn.Module):
    """y = x @ Wt + b with Wt = W^T stored [in, out] contiguous."""

    def __init__(self, weight_t: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight_t.shape
        self.weight_t = nn.Parameter(weight_t, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> TransposedLinear:
        return cls(linear.weight.detach().t().contiguous(), linear.bias)

    @property
    def weight(self) -> torch.Tensor:
        """The [out, in] view nn.Linear would hold (no copy), for code that inspects weights."""
        return self.weight_t.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # [N, in]
        out = flat @ self.weight_t if self.bias is None else torch.addmm(self.bias, flat, self.weight_t)
        return out.view(*x.shape[:-1], self.out_features)


class TransposedEmbedding(nn.Module):
    """Row lookup in a [hidden, vocab] matrix (the transposed output head it is tied to)."""

    def __init__(self, head: TransposedLinear) -> None:
        super().__init__()
        self.head = [head]  # a plain list: the parameter is registered once, on the head

    @property
    def weight(self) -> torch.Tensor:
        return self.head[0].weight  # [vocab, hidden] view

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.head[0].weight)


def use_decode_layout(model: Transformer) -> Transformer:
    """Swap the model's linear layers (in place) for the transposed layout; returns the model.

    One matrix is copied at a time and its original released before the next, so peak memory
    grows by the largest matrix, not by the model (a tied head is swapped first: the embedding
    would otherwise keep the original alive until the end)."""
    if model.config.tie_word_embeddings and model.lm_head.weight is model.embed.weight:
        model.lm_head = TransposedLinear.from_linear(model.lm_head)  # type: ignore[assignment]
        model.embed = TransposedEmbedding(model.lm_head)  # type: ignore[arg-type, assignment]
    names = [name for name, module in model.named_modules() if type(module) is nn.Linear]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, TransposedLinear.from_linear(getattr(parent, attr)))
    return model
