"""Quantisation-aware training: fake per-channel int8 weights with a straight-through estimator.

The forward pass uses exactly the weights the int8 engine will use (`model_core.quantize`'s scheme:
symmetric, one scale per output row, `scale = max|w| / 127`, round to nearest in [-127, 127]); the
backward pass treats rounding as the identity, so the weights learn to sit where rounding costs
little. LoRA layers fake-quantise their merged weight (base + delta), which is what gets quantised
after merging; plain linears of fully fine-tuned models are wrapped in `QATLinear`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fake_quant_int8(weight: torch.Tensor) -> torch.Tensor:
    """Quantise-dequantise per output row; gradient passes straight through."""
    scales = weight.detach().abs().amax(dim=1, keepdim=True) / 127.0
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    quantised = torch.clamp(torch.round(weight / scales), -127, 127) * scales
    return weight + (quantised - weight).detach()


class QATLinear(nn.Module):
    """A trainable linear whose forward pass sees its fake-int8 weight."""

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quant_int8(self.base.weight), self.base.bias)


def enable_qat(model: nn.Module) -> int:
    """Switch every block linear to fake-int8 (LoRA layers by flag, plain ones by wrapping);
    returns how many layers now train quantisation-aware."""
    from model_core.train.lora import LoRALinear

    count = 0
    for name, module in list(model.layers.named_modules()):
        if isinstance(module, LoRALinear):
            module.fake_quant = True
            count += 1
        elif isinstance(module, nn.Linear) and not isinstance(model.layers.get_submodule(name.rpartition(".")[0]),
                                                                LoRALinear | QATLinear):
            parent, _, child = name.rpartition(".")
            setattr(model.layers.get_submodule(parent), child, QATLinear(module))
            count += 1
    return count


def disable_qat(model: nn.Module) -> None:
    """Back to float weights (QATLinear unwrapped, LoRA flags cleared), keeping what was learnt."""
    from model_core.train.lora import LoRALinear

    for name, module in list(model.layers.named_modules()):
        if isinstance(module, LoRALinear):
            module.fake_quant = False
        elif isinstance(module, QATLinear):
            parent, _, child = name.rpartition(".")
            setattr(model.layers.get_submodule(parent), child, module.base)
