"""Serving base + LoRA adapter: read a Verity adapter file and fold it into a plain model's weights.

Training (model_core.train.lora) writes adapters as safetensors holding only the A/B matrices of every
adapted linear layer, with rank, alpha and the target list in the metadata. Serving adds each delta
`B @ A * alpha / rank` into the base weight once, at load, before any layout change (the R1 profile's
oneDNN packing, int8 quantisation), so base + adapter costs nothing per token. This module imports no
training code: an engine that serves a tuned checkpoint needs only torch and safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

ADAPTER_FORMAT = "verity-lora-1"
PROBE = "base_probe"  # per target: a few of the base weight's values, to refuse merging onto another base
PROBE_POINTS = 32


def base_probe(weight: torch.Tensor) -> torch.Tensor:
    """`PROBE_POINTS` values of a base weight at fixed, evenly spread positions (float32)."""
    flat = weight.detach().reshape(-1)
    at = torch.linspace(0, flat.numel() - 1, PROBE_POINTS).round().long().to(flat.device)
    return flat[at].to("cpu", torch.float32).contiguous()


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The adapter's tensors and metadata; a clear error for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no adapter file")
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
    if meta.get("format") != ADAPTER_FORMAT:
        raise ValueError(f"{path}: not a Verity LoRA adapter (metadata format {meta.get('format')!r})")
    for field in ("rank", "alpha", "targets"):
        if field not in meta:
            raise ValueError(f"{path}: adapter metadata lacks {field!r}")
    return tensors, meta


def merge_adapter(model: nn.Module, path: str | Path) -> int:
    """Add a saved adapter's deltas into a plain model's weights, in place; returns layers merged.

    Every target is checked before any weight changes (its shape, and its base probe: a few of the
    base weights recorded at training, so an adapter meant for another base of the same shape is
    refused too), so a mismatched adapter leaves the model as it was and the error names the layer."""
    path = Path(path)
    tensors, meta = read_adapter(path)
    scaling = float(meta["alpha"]) / int(meta["rank"])
    params = dict(model.named_parameters())
    deltas: list[tuple[torch.Tensor, torch.Tensor]] = []
    for name in json.loads(meta["targets"]):
        key = f"{name}.weight"
        if key not in params:
            raise ValueError(f"{path}: adapter targets {name!r}, which the model does not have")
        a, b = tensors.get(f"{name}.lora_a"), tensors.get(f"{name}.lora_b")
        if a is None or b is None:
            raise ValueError(f"{path}: adapter lists {name!r} but lacks its lora_a/lora_b tensors")
        weight = params[key]
        shape = (b.shape[0], a.shape[1])
        if shape != tuple(weight.shape):
            raise ValueError(f"{path}: adapter for {name!r} has shape {shape}, the model's weight "
                             f"{tuple(weight.shape)}")
        probe = tensors.get(f"{name}.{PROBE}")
        # bfloat16 serving rounds the base to 8 bits of mantissa; another base differs far beyond that
        if probe is not None and not torch.allclose(base_probe(weight), probe, rtol=1e-2, atol=1e-3):
            raise ValueError(f"{path}: adapter was trained on another base model (the weights of {name!r} "
                             f"differ from the ones it was trained on{_base_hint(meta)})")
        deltas.append((weight, (b @ a) * scaling))
    with torch.no_grad():
        for weight, delta in deltas:
            weight.add_(delta.to(weight.dtype).to(weight.device))
    return len(deltas)


def _base_hint(meta: dict[str, str]) -> str:
    return f"; its base was {meta['base']}" if meta.get("base") else ""
