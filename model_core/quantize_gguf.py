"""GGUF files straight to int8 modules: Q8_0 tensors without a float round trip.

``Engine.load("model.gguf", quantize="int8")`` reaches ``load_gguf_int8`` (through
``quantize_load.load_checkpoint_int8``). The configuration, tokenizer and tensor names come from the
float GGUF loader (model_core/gguf_loader.py), so both read a file the same way; what differs is
where each weight goes:

* a **Q8_0** tensor whose module is int8 goes through ``quantize.int8_from_q8_0``: its int8 blocks
  become per-row int8 directly (rows whose 32-value blocks share one scale are kept bit for bit;
  others are requantised from the exact block products), never a float matrix of the tensor;
* any other tensor type bound for an int8 module is dequantised (``gguf.quants.dequantize``, as the
  float loader does) and quantised per row at once, one tensor at a time;
* norms (and biases) are dequantised into the float parameters.

llama.cpp permutes the q/k rows of llama checkpoints (its RoPE pairs adjacent dimensions); the
permutation is undone on the int8 rows and their scales alike, as the float loader undoes it on the
float rows. The result equals "load in float, then ``quantize_model_int8``" exactly for Q8_0 rows
whose blocks agree and within half a row step otherwise (tests/model_core/test_quantize_load.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from model_core import gguf_loader
from model_core.checkpoint import Checkpoint, expected_hf_names, map_name
from model_core.errors import CheckpointError
from model_core.quantize import Int8Embedding, Int8Linear, int8_from_q8_0, quantize_per_channel

__all__ = ["load_gguf_int8"]


def _row_order(rows: int, heads: int) -> torch.Tensor:
    """Source row of each output row when undoing llama.cpp's q/k permutation (gguf_loader's reshape)."""
    return torch.arange(rows).reshape(heads, rows // heads // 2, 2).transpose(1, 2).reshape(rows)


def _float(t: Any, shape: tuple[int, ...]) -> torch.Tensor:
    w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
    return torch.from_numpy(np.array(w, order="C"))  # a private, writable copy of the mapped data


def load_gguf_int8(path: Path, *, dtype: torch.dtype = torch.float32, progress: bool = True) -> Checkpoint:
    """A GGUF checkpoint whose linear layers and embedding are int8 (see the module docstring)."""
    from model_core.quantize_load import int8_model_skeleton, release_freed_memory

    source = str(path)
    try:
        reader = GGUFReader(source)
    except Exception as exc:  # the reader raises ValueError/struct errors for a damaged header
        raise CheckpointError(f"{source}: not a readable GGUF file ({exc})", path=source) from exc
    meta = gguf_loader.read_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    config = gguf_loader.config_from_gguf(meta, set(tensors), source)
    if "rope_freqs.weight" in tensors:
        freqs = dequantize(tensors["rope_freqs.weight"].data, tensors["rope_freqs.weight"].tensor_type)
        config = gguf_loader._replace(config, rope_scaling=gguf_loader._llama3_scaling_from_freqs(
            config, np.asarray(freqs).reshape(-1), source))
    tokenizer = gguf_loader.build_tokenizer(meta, source)
    model = int8_model_skeleton(config, dtype)
    modules = dict(model.named_modules())
    params = dict(model.named_parameters(remove_duplicate=False))
    expected, seen = set(expected_hf_names(config)), set()
    for name, t in tensors.items():
        if name == "rope_freqs.weight":
            continue
        hf = gguf_loader.hf_name(name)
        if hf is None or (hf not in expected and not (hf == "lm_head.weight" and config.tie_word_embeddings)):
            raise CheckpointError(f"{source}: unexpected tensor {name!r} for a {config.architecture} GGUF",
                                  path=source, field=name)
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: the head is the embedding, as the float loader does
        if t.tensor_type not in gguf_loader.SUPPORTED_TYPES:
            raise CheckpointError(f"{source}: tensor {name!r} is of type {t.tensor_type.name}", path=source, field=name)
        ours, part = map_name(hf)  # type: ignore[misc]
        owner, _, leaf = ours.rpartition(".")
        module, rows = modules[owner], model.part_rows(part) if part is not None else None
        quantised = isinstance(module, Int8Linear | Int8Embedding) and leaf == "weight"
        target = module.weight if quantised else params[ours].data
        target = target[rows[0]:rows[1]] if rows is not None else target
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists the fastest dimension first
        if shape != tuple(target.shape):
            raise CheckpointError(f"{source}: tensor {name!r} has shape {shape}; expected {tuple(target.shape)}",
                                  path=source, field=name)
        if not quantised:
            target.copy_(_float(t, shape))
            seen.add(hf)
            continue
        if t.tensor_type == GGMLQuantizationType.Q8_0:
            q, scales, _ = int8_from_q8_0(np.asarray(t.data), shape)  # type: ignore[arg-type]
        else:
            q, scales = quantize_per_channel(_float(t, shape))
        if config.architecture == "llama" and hf.endswith(("q_proj.weight", "k_proj.weight")):
            order = _row_order(shape[0], config.num_heads if hf.endswith("q_proj.weight") else config.num_kv_heads)
            q, scales = q[order], scales[order]
        target.copy_(q)
        (module.scales[rows[0]:rows[1]] if rows is not None else module.scales).copy_(scales)
        seen.add(hf)
    missing = sorted(expected - seen)
    if missing:
        raise CheckpointError(f"{source}: checkpoint lacks tensor(s) {missing[:3]}", field=missing[0])
    release_freed_memory()
    model.eval()
    generation = {"bos_token_id": config.bos_token_id, "eos_token_id": list(config.eos_token_ids)}
    return Checkpoint(config=config, model=model, tokenizer=tokenizer, source=source, format="gguf",
                      generation_config=generation)
