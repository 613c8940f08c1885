"""Shared by the inference tests."""

from __future__ import annotations

from pathlib import Path


def random_adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter with random weights for the checkpoint at `base`, written to `out` the way
    `model_core train` writes one (a trained adapter is not needed to show the serving wiring)."""
    import torch

    from model_core.checkpoint import load_checkpoint
    from model_core.train.lora import apply_lora, save_adapter, trainable_parameters

    torch.manual_seed(0)
    model = load_checkpoint(base, progress=False).model
    apply_lora(model, rank=2, alpha=4)
    for p in trainable_parameters(model):
        torch.nn.init.normal_(p, std=0.02)
    return save_adapter(model, out)
