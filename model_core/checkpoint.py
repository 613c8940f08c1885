"""Loading checkpoints: Hugging Face directories (single or sharded safetensors) and, via
gguf_loader.py, GGUF files; the one table that maps checkpoint tensor names to model_core's.

Weights stream in lazily, one tensor at a time, read from the safetensors files with plain reads (no
memory map whose pages would stay resident) into a model whose parameters were allocated once, so
peak memory is the model plus one tensor, not twice the model.
Every problem (missing file, unknown or missing tensor, wrong shape) raises `CheckpointError`
naming the file and tensor and what was expected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from tqdm import tqdm

from model_core.config import ModelConfig, config_from_hf
from model_core.errors import CheckpointError
from model_core.model import Transformer
from model_core.tokenizer import Tokenizer

# Hugging Face name -> (model_core parameter, part of a fused weight or None). `{i}` is the layer.
# The only place names are translated: GGUF names are first mapped to these (gguf_loader.GGUF_TO_HF).
HF_NAME_TABLE: list[tuple[str, str, str | None]] = [
    ("model.embed_tokens.weight", "embed.weight", None),
    ("model.norm.weight", "norm.weight", None),
    ("lm_head.weight", "lm_head.weight", None),
    ("model.layers.{i}.input_layernorm.weight", "layers.{i}.attn_norm.weight", None),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.mlp_norm.weight", None),
    ("model.layers.{i}.self_attn.q_proj.weight", "layers.{i}.attn.wqkv.weight", "q"),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers.{i}.attn.wqkv.weight", "k"),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers.{i}.attn.wqkv.weight", "v"),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers.{i}.attn.wqkv.bias", "q"),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers.{i}.attn.wqkv.bias", "k"),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers.{i}.attn.wqkv.bias", "v"),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers.{i}.attn.wo.weight", None),
    ("model.layers.{i}.mlp.gate_proj.weight", "layers.{i}.mlp.w_gate_up.weight", "gate"),
    ("model.layers.{i}.mlp.up_proj.weight", "layers.{i}.mlp.w_gate_up.weight", "up"),
    ("model.layers.{i}.mlp.down_proj.weight", "layers.{i}.mlp.w_down.weight", None),
]
_PATTERNS = [(re.compile("^" + re.escape(hf).replace(r"\{i\}", r"(\d+)") + "$"), ours, part)
             for hf, ours, part in HF_NAME_TABLE]
# Tensors some exporters write that carry nothing the model needs (recomputed from the config).
_IGNORED = re.compile(r"(rotary_emb\.inv_freq|\.rope\.freqs)$")


def map_name(hf_name: str) -> tuple[str, str | None] | None:
    """The model_core parameter (and fused part) a Hugging Face tensor name fills, or None."""
    for pattern, ours, part in _PATTERNS:
        m = pattern.match(hf_name)
        if m:
            return (ours.replace("{i}", m.group(1)) if m.groups() else ours), part
    return None


def expected_hf_names(config: ModelConfig) -> list[str]:
    """Every tensor a complete checkpoint of this config holds, in Hugging Face names."""
    names = []
    for hf, _ours, _part in HF_NAME_TABLE:
        if hf.endswith(".bias") and not config.attention_bias:
            continue
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            continue
        names.extend([hf.replace("{i}", str(i)) for i in range(config.num_layers)] if "{i}" in hf else [hf])
    return names


# A source of tensors: (hf_name, loader returning the tensor, file it comes from).
TensorSource = Iterator[tuple[str, Callable[[], torch.Tensor], str]]


def fill_model(model: Transformer, tensors: TensorSource, total: int, *, progress: bool, desc: str) -> None:
    """Copy every checkpoint tensor into its (slice of a) parameter; fail on anything unexpected."""
    params = dict(model.named_parameters(remove_duplicate=False))
    expected = set(expected_hf_names(model.config))
    seen: set[str] = set()
    bar = tqdm(total=total, desc=desc, unit="tensor", disable=not progress, leave=False)
    try:
        for hf_name, load, source in tensors:
            bar.update(1)
            if _IGNORED.search(hf_name):
                continue
            if hf_name == "lm_head.weight" and model.config.tie_word_embeddings:
                continue  # tied: the head is the embedding, as transformers does
            mapped = map_name(hf_name)
            if mapped is None or hf_name not in expected:
                raise CheckpointError(f"{source}: unexpected tensor {hf_name!r}; a {model.config.hf_architecture} "
                                      f"checkpoint of {model.config.num_layers} layers has no such tensor",
                                      path=source, field=hf_name)
            ours, part = mapped
            target = params[ours].data
            if part is not None:
                start, end = model.part_rows(part)
                target = target[start:end]
            tensor = load()
            if tuple(tensor.shape) != tuple(target.shape):
                raise CheckpointError(f"{source}: tensor {hf_name!r} has shape {tuple(tensor.shape)}; expected "
                                      f"{tuple(target.shape)} from config.json", path=source, field=hf_name)
            if not tensor.is_floating_point():
                raise CheckpointError(f"{source}: tensor {hf_name!r} has dtype {tensor.dtype}; expected a float "
                                      "dtype", path=source, field=hf_name)
            target.copy_(tensor)
            seen.add(hf_name)
    finally:
        bar.close()
    missing = sorted(expected - seen)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"{desc}: checkpoint lacks tensor(s) {missing[:3]}{more}", field=missing[0])


class _SkipInit(TorchFunctionMode):
    """Turns the ``torch.nn.init`` calls of module constructors into no-ops.

    On the meta device they would do nothing useful anyway, and ``nn.Embedding``'s ``normal_`` has no
    C++ meta kernel: its Python one imports torch._refs, torch._decomp and sympy on first use, about
    70 MB of resident module objects that a serving process never needs again.
    """

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)


def meta_model(config: ModelConfig, dtype: torch.dtype) -> Transformer:
    """The model's modules on the meta device: shapes only, no storage and no parameter init."""
    with torch.device("meta"), _SkipInit():
        return Transformer(config, dtype=dtype, device="meta")


def allocate_model(config: ModelConfig, dtype: torch.dtype, device: str) -> Transformer:
    """A model with uninitialised parameters (no time spent on random init that gets overwritten)."""
    model = meta_model(config, dtype)
    # torch.empty by shape, not Module.to_empty: empty_like of a meta tensor runs through torch._refs,
    # whose first use imports sympy (the same ~70 MB that _SkipInit keeps out)
    model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device=device))
    model.tie_weights()
    return model


@dataclass
class Checkpoint:
    """Everything loaded from one checkpoint."""

    config: ModelConfig
    model: Transformer
    tokenizer: Tokenizer
    source: str
    format: str  # "hf" | "gguf"
    generation_config: dict = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file is missing", path=str(path)) from exc
    except ValueError as exc:
        raise CheckpointError(f"{path}: invalid JSON ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object", path=str(path))
    return data


def safetensors_files(directory: Path) -> list[Path]:
    """The weight files of a directory: the shards its index names, or the single file."""
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index}: field 'weight_map' is missing or empty", path=str(index), field="weight_map")
        files = [directory / name for name in dict.fromkeys(weight_map.values())]
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{f}: shard named by {index.name} is missing", path=str(f))
        return files
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{directory}: no *.safetensors file; expected model.safetensors or shards with "
                              "model.safetensors.index.json", path=str(directory))
    return files


_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}


def _safetensors_header(path: Path) -> tuple[dict, int]:
    """(tensor table, offset of the data) of a safetensors file: an 8-byte length, then JSON."""
    try:
        with path.open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if size <= 0 or size > 100_000_000 or size + 8 > path.stat().st_size:
                raise ValueError(f"header length {size} does not fit a file of {path.stat().st_size} bytes")
            header = json.loads(f.read(size))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})", path=str(path)) from exc
    header.pop("__metadata__", None)
    return header, 8 + size


def _safetensors_source(files: list[Path]) -> tuple[TensorSource, int]:
    """Tensors read one at a time with plain file reads: unlike a memory map, nothing of the file stays
    resident once a tensor has been copied into its parameter, so peak memory is the model plus one tensor."""
    headers = [(f, *_safetensors_header(f)) for f in files]
    total = sum(len(h) for _, h, _ in headers)

    def read(path: Path, name: str, entry: dict, base: int) -> torch.Tensor:
        dtype = _ST_DTYPES.get(entry.get("dtype"))
        start, end = entry["data_offsets"]
        if dtype is None:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {entry.get('dtype')!r}; expected F32, F16 or BF16",
                                  path=str(path), field=name)
        with path.open("rb") as f:
            f.seek(base + start)
            data = bytearray(end - start)
            if f.readinto(data) != end - start:
                raise CheckpointError(f"{path}: tensor {name!r} is truncated", path=str(path), field=name)
        return torch.frombuffer(data, dtype=dtype).reshape(entry["shape"]) if data else torch.empty(entry["shape"], dtype=dtype)

    def gen() -> TensorSource:
        for f, header, base in headers:
            for name, entry in header.items():
                yield name, (lambda f=f, name=name, entry=entry, base=base: read(f, name, entry, base)), str(f)
    return gen(), total


def load_hf_dir(directory: Path, *, dtype: torch.dtype, device: str, progress: bool) -> Checkpoint:
    config = config_from_hf(_read_json(directory / "config.json"), str(directory / "config.json"))
    tokenizer = Tokenizer.from_dir(directory)
    gen_file = directory / "generation_config.json"
    generation = _read_json(gen_file) if gen_file.is_file() else {}
    files = safetensors_files(directory)
    model = allocate_model(config, dtype, device)
    source, total = _safetensors_source(files)
    fill_model(model, source, total, progress=progress, desc=f"loading {directory.name}")
    model.eval()
    return Checkpoint(config=config, model=model, tokenizer=tokenizer, source=str(directory), format="hf",
                      generation_config=generation)


def load_checkpoint(path: str | Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
                    progress: bool = True) -> Checkpoint:
    """Load a Hugging Face directory or a `.gguf` file."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or directory; expected a checkpoint directory or a .gguf file",
                              path=str(p))
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise CheckpointError(f"{p}: a file checkpoint must be a .gguf file", path=str(p))
        from model_core.gguf_loader import load_gguf

        return load_gguf(p, dtype=dtype, device=device, progress=progress)
    return load_hf_dir(p, dtype=dtype, device=device, progress=progress)


def hf_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """The model's weights under Hugging Face names (the table read backwards), for `convert`."""
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for hf in expected_hf_names(model.config):
        ours, part = map_name(hf)  # type: ignore[misc]
        tensor = params[ours].data
        if part is not None:
            start, end = model.part_rows(part)
            tensor = tensor[start:end]
        out[hf] = tensor.detach().to("cpu").contiguous()
    return out
