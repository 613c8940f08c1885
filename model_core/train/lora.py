"""LoRA adapters on every linear layer of the transformer blocks, saved as a small safetensors file.

`apply_lora(model, rank, alpha)` wraps each `nn.Linear` inside `model.layers` (the fused q/k/v, the
attention output, the fused gate/up and the down projection) in a `LoRALinear`: the frozen base
weight plus `B @ A * alpha / rank`, with `B` starting at zero so the wrapped model computes exactly
what the base did. The output head is left alone: in SmolLM2 (and small Qwen2) it is tied to the
token embedding, and merging a delta into it would change the embedding too.

`save_adapter` writes only the A/B matrices (a few MB for SmolLM2-135M at rank 8) with their rank,
alpha and target list in the safetensors metadata; `merge_adapter` adds the deltas into a plain
model's weights in place, which is how a serving engine loads base + adapter at no runtime cost.
Fake int8 quantisation for quantisation-aware training hooks in here (`fake_quant`, see qat.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from model_core.adapter import ADAPTER_FORMAT, PROBE, base_probe, merge_adapter, read_adapter
from model_core.train.qat import fake_quant_int8

__all__ = ["ADAPTER_FORMAT", "apply_lora", "merge_adapter", "read_adapter", "save_adapter"]



class LoRALinear(nn.Module):
    """y = x W^T + b + (x A^T B^T) * scaling, or with `fake_quant` y = x fq(W + s B A)^T + b."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        if rank <= 0:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.base = base
        base.weight.requires_grad_(False)
        if base.bias is not None:
            base.bias.requires_grad_(False)
        dtype, device = base.weight.dtype, base.weight.device
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, dtype=dtype, device=device))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=dtype, device=device))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.fake_quant = False

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def delta(self) -> torch.Tensor:
        return (self.lora_b @ self.lora_a) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fake_quant:
            return F.linear(x, fake_quant_int8(self.base.weight + self.delta()), self.base.bias)
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scaling


def _block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(f"layers.{name}", m) for name, m in model.layers.named_modules() if isinstance(m, nn.Linear)]


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, module)


def apply_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0) -> list[str]:
    """Freeze the model and wrap every block linear in a LoRALinear; returns the wrapped names."""
    model.requires_grad_(False)
    names = []
    for name, linear in _block_linears(model):
        _set(model, name, LoRALinear(linear, rank, alpha))
        names.append(name)
    if not names:
        raise ValueError("model has no linear layers under `layers` to adapt")
    return names


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, m in lora_modules(model).items():
        out[f"{name}.lora_a"] = m.lora_a.detach().to("cpu", torch.float32).contiguous()
        out[f"{name}.lora_b"] = m.lora_b.detach().to("cpu", torch.float32).contiguous()
    return out


def save_adapter(model: nn.Module, path: str | Path, extra: dict[str, str] | None = None) -> Path:
    mods = lora_modules(model)
    if not mods:
        raise ValueError("model carries no LoRA adapter to save")
    first = next(iter(mods.values()))
    meta = {"format": ADAPTER_FORMAT, "rank": str(first.rank), "alpha": str(first.alpha),
            "targets": json.dumps(sorted(mods)), **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state(model)
    for name, m in mods.items():  # what merge_adapter checks: the adapter meets the base it was trained on
        tensors[f"{name}.{PROBE}"] = base_probe(m.base.weight)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_adapter_weights(model: nn.Module, path: str | Path) -> None:
    """Copy a saved adapter into a model that already has LoRA modules of the same shapes."""
    tensors, _ = read_adapter(path)
    for name, m in lora_modules(model).items():
        m.lora_a.data.copy_(tensors[f"{name}.lora_a"])
        m.lora_b.data.copy_(tensors[f"{name}.lora_b"])


def merge_lora_modules(model: nn.Module) -> nn.Module:
    """Fold every LoRALinear back into a plain nn.Linear (weights merged), in place."""
    for name, m in lora_modules(model).items():
        with torch.no_grad():
            m.base.weight.add_(m.delta().to(m.base.weight.dtype))
        _set(model, name, m.base)
    return model
