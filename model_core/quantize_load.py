"""Loading a checkpoint straight into int8 modules: no float copy of the model is ever built.

``Engine.load(..., quantize="int8")`` calls ``load_checkpoint_int8``. For a Hugging Face directory
the model is built on the meta device, its linear layers and embedding are swapped for int8 modules
(``quantize.int8_skeleton``: tied head and embedding share one int8 matrix), and every checkpoint
tensor is quantised per output row as it is read and written into its row range (q/k/v and
gate/up parts of fused weights are row ranges; per-row scales make quantising a part the same as
quantising the fused matrix). Peak memory is the int8 model plus one float tensor, and the float
weights never exist as a whole — which is what keeps the resident memory of an int8 engine at a
quarter of the float one, not just its parameter bytes.

GGUF files load through ``quantize_gguf`` (Q8_0 tensors straight to int8). Devices other than the
CPU go through the float loader and are quantised in place afterwards; the freed float pages are handed back to the OS (``release_freed_memory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path
from typing import BinaryIO

import torch
from tqdm import tqdm

from model_core.checkpoint import (
    _IGNORED,
    _ST_DTYPES,
    Checkpoint,
    _read_json,
    _safetensors_header,
    expected_hf_names,
    load_checkpoint,
    map_name,
    meta_model,
    safetensors_files,
)
from model_core.config import ModelConfig, config_from_hf
from model_core.errors import CheckpointError
from model_core.model import Transformer
from model_core.quantize import (
    _ROWS_PER_BLOCK,
    Int8Embedding,
    Int8Linear,
    int8_skeleton,
    quantize_model_int8,
    quantize_per_channel,
)
from model_core.tokenizer import Tokenizer

__all__ = ["int8_model_skeleton", "load_checkpoint_int8", "release_freed_memory"]


def release_freed_memory() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    Swapping modules frees the float weights, but glibc keeps freed chunks below its (dynamic) mmap
    threshold in the heap, so without this the process would keep most of the float model resident.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


def _materialise_rest(model: Transformer, dtype: torch.dtype, device: str) -> None:
    """Allocate the parameters the int8 swap left on the meta device (norms, biases)."""
    for module in model.modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if param.device.type == "meta":
                setattr(module, name, torch.nn.Parameter(torch.empty(param.shape, dtype=dtype, device=device),
                                                         requires_grad=False))


def _read_rows(f: BinaryIO, entry: dict, base: int, first: int, last: int, where: str) -> torch.Tensor:
    """Rows ``first:last`` of a safetensors tensor (dim 0), read with one plain file read."""
    dtype = _ST_DTYPES.get(entry.get("dtype"))
    if dtype is None or not dtype.is_floating_point:
        raise CheckpointError(f"{where} has dtype {entry.get('dtype')!r}; expected F32, F16 or BF16", path=where)
    shape, (start, end) = entry["shape"], entry["data_offsets"]
    row_bytes = (end - start) // max(shape[0], 1) if shape else end - start
    data = bytearray((last - first) * row_bytes)
    f.seek(base + start + first * row_bytes)
    if f.readinto(data) != len(data):
        raise CheckpointError(f"{where} is truncated", path=where)
    return torch.frombuffer(data, dtype=dtype).reshape(last - first, *shape[1:]) if data else \
        torch.empty((0, *shape[1:]), dtype=dtype)


def _fill_int8(model: Transformer, directory: Path, *, progress: bool) -> None:
    """Read every tensor once; quantise weights into their int8 rows block by block, copy the rest."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters(remove_duplicate=False))
    expected = set(expected_hf_names(model.config))
    seen: set[str] = set()
    headers = [(path, *_safetensors_header(path)) for path in safetensors_files(directory)]
    bar = tqdm(total=sum(len(h) for _, h, _ in headers), desc=f"loading {directory.name} (int8)", unit="tensor",
               disable=not progress, leave=False)
    try:
        for path, header, base in headers:
            with path.open("rb") as f:
                for hf_name, entry in header.items():
                    bar.update(1)
                    where = f"{path}: tensor {hf_name!r}"
                    if _IGNORED.search(hf_name) or (hf_name == "lm_head.weight" and model.config.tie_word_embeddings):
                        continue
                    mapped = map_name(hf_name)
                    if mapped is None or hf_name not in expected:
                        raise CheckpointError(f"{path}: unexpected tensor {hf_name!r}", path=str(path), field=hf_name)
                    ours, part = mapped
                    owner, _, leaf = ours.rpartition(".")
                    module, rows = modules[owner], model.part_rows(part) if part is not None else None
                    quantised = isinstance(module, Int8Linear | Int8Embedding) and leaf == "weight"
                    target = module.weight if quantised else params[ours].data
                    target = target[rows[0]:rows[1]] if rows is not None else target
                    if tuple(entry["shape"]) != tuple(target.shape):
                        raise CheckpointError(f"{where} has shape {tuple(entry['shape'])}; expected "
                                              f"{tuple(target.shape)} from config.json", path=str(path), field=hf_name)
                    if not quantised:
                        target.copy_(_read_rows(f, entry, base, 0, target.shape[0], where))
                    else:  # block by block: the float form of a big matrix (the embedding) never exists whole
                        scales = module.scales[rows[0]:rows[1]] if rows is not None else module.scales
                        for first in range(0, target.shape[0], _ROWS_PER_BLOCK):
                            last = min(first + _ROWS_PER_BLOCK, target.shape[0])
                            q, s = quantize_per_channel(_read_rows(f, entry, base, first, last, where))
                            target[first:last].copy_(q)
                            scales[first:last].copy_(s)
                    seen.add(hf_name)
    finally:
        bar.close()
    missing = sorted(expected - seen)
    if missing:
        raise CheckpointError(f"{directory}: checkpoint lacks tensor(s) {missing[:3]}", field=missing[0])


def load_checkpoint_int8(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
                         progress: bool = True) -> Checkpoint:
    """A checkpoint whose linear layers and embedding are int8 (``dtype``: norms and activations)."""
    p = Path(path)
    if not p.exists() or torch.device(device).type != "cpu" or (p.is_file() and p.suffix.lower() != ".gguf"):
        # another device (moving tied buffers would untie them) or a bad path (the float loader
        # names the problem): load in float, quantise in place, give the float pages back
        checkpoint = load_checkpoint(p, dtype=dtype, device=device, progress=progress)
        quantize_model_int8(checkpoint.model)
        release_freed_memory()
        return checkpoint
    if p.is_file():
        from model_core.quantize_gguf import load_gguf_int8

        return load_gguf_int8(p, dtype=dtype, progress=progress)
    config = config_from_hf(_read_json(p / "config.json"), str(p / "config.json"))
    tokenizer = Tokenizer.from_dir(p)
    gen_file = p / "generation_config.json"
    generation = _read_json(gen_file) if gen_file.is_file() else {}
    model = int8_model_skeleton(config, dtype)
    _fill_int8(model, p, progress=progress)
    release_freed_memory()  # the float tensors read one by one, and their quantisation temporaries
    model.eval()
    return Checkpoint(config=config, model=model, tokenizer=tokenizer, source=str(p), format="hf",
                      generation_config=generation)


def int8_model_skeleton(config: ModelConfig, dtype: torch.dtype) -> Transformer:
    """A CPU model whose linear layers and embedding are uninitialised int8 modules, the rest float."""
    model = meta_model(config, dtype)  # shapes only: no float storage, no init
    int8_skeleton(model)  # int8 weights and scales allocated on the CPU, tie kept
    _materialise_rest(model, dtype, "cpu")
    return model
