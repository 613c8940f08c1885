"""Decode-friendly weight layouts for the R1 profile on CPU (float32/bfloat16, not quantised).

Batch-1 decode is a chain of matrix-vector products that read every weight once per token, so its
speed is the speed at which the CPU streams weights; a batched decode step (2-16 rows) should cost
about the same. Measured on this repository's 2-vCPU AMD EPYC VM over the 121 matrices of SmolLM2
(536 MB, caches cold), one token:

| layout | 1 row | 4 rows | 16 rows |
|---|---:|---:|---:|
| `nn.Linear` (W [out, in], MKL sgemm) | 33 ms | 51 ms | 50 ms |
| W^T stored [in, out] (`TransposedLinear`) | 25 ms | 45 ms | 57 ms |
| oneDNN blocked layout (`PackedLinear`) | 14 ms | 14 ms | 20 ms |

`use_decode_layout(model)` swaps every `nn.Linear` of a loaded Transformer in place: `PackedLinear`
where oneDNN is available (CPU builds of torch), `TransposedLinear` otherwise. The swap changes the
layout, not the math: outputs agree with the untouched model to float32 rounding (summation order),
checked in tests/model_core/test_fast.py and by the parity tests, which load through Engine.load.
The Zero profile (the reference) and int8 engines keep their own modules.
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


class PackedLinear(nn.Module):
    """y = x @ W^T + b with W reordered once into oneDNN's blocked layout for this CPU.

    The reordered tensor has the same size as W (an opaque `torch._mkldnn` tensor, kept as a buffer so
    memory accounting still sees it); oneDNN's kernels stream it at close to the machine's memory
    bandwidth for every row count the engine uses (1 row in batch-1 decode, up to 16 in a batched
    step, hundreds in a prefill chunk), where MKL's sgemm on the plain layout slows down sharply
    for 2-16 rows."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(weight, 1), persistent=False)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """A dense [out, in] copy (for inspection only; the forward pass never materialises it)."""
        return self.packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)  # [N, in]; oneDNN needs a dense, contiguous input
        if not flat.is_contiguous():
            flat = flat.contiguous()
        out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
        return out.view(*x.shape[:-1], self.out_features)


def packed_available(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> bool:
    """Whether oneDNN can pack weights of `dtype` on this CPU: float32 wherever oneDNN is built in;
    bfloat16 and float16 only on CPUs with the instructions for them (AVX-512 or AVX-NE-CONVERT; an
    AVX2-only CPU refuses to reorder them)."""
    if torch.device(device).type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == torch.float16:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True


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


def use_decode_layout(model: Transformer, *, packed: bool | None = None) -> Transformer:
    """Swap the model's linear layers (in place) for the decode layout; returns the model.

    `packed` (default: on a CPU whose oneDNN handles the weights' dtype) reorders every linear layer, the output head included,
    into oneDNN's layout. A tied head then gets its own packed copy while the embedding keeps the
    dense matrix for row lookups: one extra matrix of memory (113 MB for SmolLM2's 49,152 x 576
    head, +21% of its weights) for ~2.5 ms less per decoded token there (benchmarks/RESULTS.md).
    Without oneDNN, weights are stored transposed and a tied head shares its matrix with the
    embedding. One matrix is converted at a time and its original released before the next, so the
    conversion itself never holds two copies of the model."""
    if packed is None:
        packed = packed_available(model.embed.weight.device, model.embed.weight.dtype)
    tied = model.config.tie_word_embeddings and model.lm_head.weight is model.embed.weight
    if tied and packed:
        model.lm_head = PackedLinear(model.lm_head)  # type: ignore[assignment]
    elif tied:  # swapped first: the embedding would otherwise keep the original alive until the end
        model.lm_head = TransposedLinear.from_linear(model.lm_head)  # type: ignore[assignment]
        model.embed = TransposedEmbedding(model.lm_head)  # type: ignore[arg-type, assignment]
    names = [name for name, module in model.named_modules() if type(module) is nn.Linear]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, attr)
        setattr(parent, attr, PackedLinear(linear) if packed else TransposedLinear.from_linear(linear))
        del linear
    return model
