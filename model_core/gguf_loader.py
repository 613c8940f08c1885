"""GGUF files (llama.cpp's format) of the llama and qwen2 architectures, dequantised on load.

- Config: from `<arch>.*` metadata keys.
- Weights: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K tensors, dequantised one at a time with
  `gguf.quants.dequantize` (the reference implementation from llama.cpp's own Python package) and
  renamed to Hugging Face names through `GGUF_TO_HF`, then through checkpoint.HF_NAME_TABLE.
  llama.cpp's converter permutes the rows of q/k for the llama architecture (its RoPE pairs adjacent
  dimensions, Hugging Face's pairs halves); that permutation is undone here. qwen2 files are not
  permuted (llama.cpp uses the half-split rotation for them).
- Tokenizer: tokenizer.json rebuilt from `tokenizer.ggml.*` with the `tokenizers` library, mirroring
  the steps transformers takes (byte-level BPE, the vocabulary's split regex, control tokens as special
  tokens), so ids match transformers' GGUF tokenizer; the chat template comes from
  `tokenizer.chat_template`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as HFTokenizer

from model_core.checkpoint import Checkpoint, allocate_model, fill_model
from model_core.config import ModelConfig, config_from_hf
from model_core.errors import CheckpointError
from model_core.tokenizer import Tokenizer

SUPPORTED_ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
SUPPORTED_TYPES = {GGMLQuantizationType[n] for n in ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K")}

GGUF_TO_HF: list[tuple[str, str]] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
    ("blk.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    ("blk.{i}.ffn_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    ("blk.{i}.attn_q.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    ("blk.{i}.attn_k.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    ("blk.{i}.attn_v.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    ("blk.{i}.attn_q.bias", "model.layers.{i}.self_attn.q_proj.bias"),
    ("blk.{i}.attn_k.bias", "model.layers.{i}.self_attn.k_proj.bias"),
    ("blk.{i}.attn_v.bias", "model.layers.{i}.self_attn.v_proj.bias"),
    ("blk.{i}.attn_output.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    ("blk.{i}.ffn_gate.weight", "model.layers.{i}.mlp.gate_proj.weight"),
    ("blk.{i}.ffn_up.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("blk.{i}.ffn_down.weight", "model.layers.{i}.mlp.down_proj.weight"),
]
_GGUF_PATTERNS = [(re.compile("^" + re.escape(g).replace(r"\{i\}", r"(\d+)") + "$"), hf) for g, hf in GGUF_TO_HF]

# How each `tokenizer.ggml.pre` splits text before BPE (transformers' gguf_tokenizer_mapping.py).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZER_SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT,
                        "smaug-bpe": _LLAMA3_SPLIT, "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}
_CONTROL, _USER_DEFINED = 3, 4


def hf_name(gguf_name: str) -> str | None:
    for pattern, hf in _GGUF_PATTERNS:
        m = pattern.match(gguf_name)
        if m:
            return hf.replace("{i}", m.group(1)) if m.groups() else hf
    return None


def read_metadata(reader: GGUFReader) -> dict[str, Any]:
    meta = {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        meta[key] = f.contents()
    return meta


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable spelling of the 256 byte values (what byte-level vocabularies are written in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def build_tokenizer(meta: dict[str, Any], source: str) -> Tokenizer:
    """tokenizer.json from `tokenizer.ggml.*` metadata (byte-level BPE vocabularies only)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise CheckpointError(f"{source}: field 'tokenizer.ggml.model' is {kind!r}; expected 'gpt2' (byte-level BPE, "
                              "as in the Qwen2, Llama-3 and SmolLM2 families)", path=source, field="tokenizer.ggml.model")
    tokens: list[str] = meta.get("tokenizer.ggml.tokens") or []
    merges: list[str] = meta.get("tokenizer.ggml.merges") or []
    types: list[int] = meta.get("tokenizer.ggml.token_type") or []
    if not tokens or not merges:
        raise CheckpointError(f"{source}: fields 'tokenizer.ggml.tokens'/'tokenizer.ggml.merges' are missing",
                              path=source, field="tokenizer.ggml.tokens")
    spelling = _bytes_to_unicode()
    alphabet = set(spelling.values())
    vocab = {(t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
             for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], fuse_unk=False, byte_fallback=False)
    backend = HFTokenizer(bpe)
    split = PRE_TOKENIZER_SPLITS.get(meta.get("tokenizer.ggml.pre", ""))
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(split), behavior="isolated"),
                                                         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>, <|endoftext|>) stay whole and are special; a "control" token spelled
    # outside the byte alphabet is a llama.cpp mislabel and transformers skips it, so do we.
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                for t, ty in zip(tokens, types, strict=False) if ty == _CONTROL and set(t) <= alphabet])
    backend.add_tokens([AddedToken(t, normalized=False, special=False)
                        for t, ty in zip(tokens, types, strict=False) if ty == _USER_DEFINED and t in vocab])

    def special(key: str) -> str | None:
        idx = meta.get(f"tokenizer.ggml.{key}")
        return tokens[idx] if isinstance(idx, int) and 0 <= idx < len(tokens) else None

    bos, eos = special("bos_token_id"), special("eos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token") and bos is not None:
        backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                               special_tokens=[(bos, vocab.get(bos, 0))])
    return Tokenizer(backend, bos_token=bos, eos_token=eos, chat_template=meta.get("tokenizer.chat_template"))


def config_from_gguf(meta: dict[str, Any], tensor_names: set[str], source: str) -> ModelConfig:
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHS:
        raise CheckpointError(f"{source}: field 'general.architecture' is {arch!r}; expected one of "
                              f"{sorted(SUPPORTED_ARCHS)}", path=source, field="general.architecture")

    def get(key: str, default: Any = None) -> Any:
        value = meta.get(f"{arch}.{key}", default)
        if value is None:
            raise CheckpointError(f"{source}: field '{arch}.{key}' is missing", path=source, field=f"{arch}.{key}")
        return value

    heads = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    eos = meta.get("tokenizer.ggml.eos_token_id")
    cfg = {
        "architectures": [SUPPORTED_ARCHS[arch]],
        "vocab_size": int(meta.get(f"{arch}.vocab_size") or len(meta.get("tokenizer.ggml.tokens") or [])),
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(get("attention.head_count_kv", heads)),
        "head_dim": int(meta.get(f"{arch}.attention.key_length") or hidden // heads),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length")),
        "tie_word_embeddings": "output.weight" not in tensor_names,
        "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": eos,
        "_name_or_path": str(meta.get("general.name", "")),
    }
    return config_from_hf(cfg, source)


def _llama3_scaling_from_freqs(config: ModelConfig, freqs: np.ndarray, source: str) -> dict[str, Any]:
    """llama.cpp stores llama3 RoPE scaling as per-dimension divisors (`rope_freqs.weight`), not as the
    parameters; recover Llama 3.1's parameters and check they reproduce the divisors exactly."""
    from model_core.model import rope_inv_freq

    plain = rope_inv_freq(config)
    for orig in (8192, 4096, 16384):
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": orig}
        scaled = rope_inv_freq(_replace(config, rope_scaling=scaling))
        if np.allclose((plain / scaled).numpy(), freqs, rtol=1e-3):
            return scaling
    raise CheckpointError(f"{source}: tensor 'rope_freqs.weight' does not match llama3 RoPE scaling; this RoPE "
                          "variant is not supported", path=source, field="rope_freqs.weight")


def _replace(config: ModelConfig, **changes: Any) -> ModelConfig:
    from dataclasses import replace

    return replace(config, **changes)


def load_gguf(path: Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu", progress: bool = True,
              ) -> Checkpoint:
    source = str(path)
    try:
        reader = GGUFReader(source)  # memory-maps the file; tensors are read when dequantised
    except Exception as exc:  # the reader raises ValueError/struct errors for a damaged header
        raise CheckpointError(f"{source}: not a readable GGUF file ({exc})", path=source) from exc
    meta = read_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    config = config_from_gguf(meta, set(tensors), source)
    if "rope_freqs.weight" in tensors:
        freqs = dequantize(tensors["rope_freqs.weight"].data, tensors["rope_freqs.weight"].tensor_type)
        config = _replace(config, rope_scaling=_llama3_scaling_from_freqs(config, np.asarray(freqs).reshape(-1), source))
    tokenizer = build_tokenizer(meta, source)
    permute = config.architecture == "llama"

    def load(t: Any, name: str) -> torch.Tensor:
        if t.tensor_type not in SUPPORTED_TYPES:
            raise CheckpointError(f"{source}: tensor {t.name!r} is of type {t.tensor_type.name}; expected one of "
                                  f"{sorted(q.name for q in SUPPORTED_TYPES)}", path=source, field=t.name)
        shape = tuple(int(d) for d in reversed(t.shape))  # GGUF lists the fastest dimension first
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        if permute and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = config.num_heads if name.endswith("q_proj.weight") else config.num_kv_heads
            out, inp = w.shape
            w = w.reshape(heads, out // heads // 2, 2, inp).swapaxes(1, 2).reshape(out, inp)
        if not w.flags.writeable or not w.flags.c_contiguous:  # memory-mapped F32 data is read-only
            w = np.array(w, order="C")
        return torch.from_numpy(w)

    def gen():  # noqa: ANN202 - a TensorSource
        for name, t in tensors.items():
            if name == "rope_freqs.weight":
                continue
            mapped = hf_name(name)
            if mapped is None:
                raise CheckpointError(f"{source}: unexpected tensor {name!r} for a {config.architecture} GGUF",
                                      path=source, field=name)
            yield mapped, (lambda t=t, mapped=mapped: load(t, mapped)), source

    model = allocate_model(config, dtype, device)
    fill_model(model, gen(), len(tensors), progress=progress, desc=f"loading {path.name}")
    model.eval()
    generation = {"bos_token_id": config.bos_token_id, "eos_token_id": list(config.eos_token_ids)}
    return Checkpoint(config=config, model=model, tokenizer=tokenizer, source=source, format="gguf",
                      generation_config=generation)
