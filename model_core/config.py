"""The model configuration: one dataclass, read from a Hugging Face `config.json` or GGUF metadata.

Only the fields the two supported architectures (Qwen2 and Llama) need. Anything that would make
the model compute something different from what the checkpoint expects (sliding-window attention,
an unknown RoPE scaling type, a non-SiLU activation) is refused with a `CheckpointError` naming the
field, rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from model_core.errors import CheckpointError

ARCHITECTURES = {"Qwen2ForCausalLM": "qwen2", "LlamaForCausalLM": "llama"}
SUPPORTED_ROPE_TYPES = ("default", "llama3")


@dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of a decoder-only transformer of the Qwen2/Llama family."""

    architecture: str  # "qwen2" | "llama"
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool  # q/k/v projections carry a bias (always for Qwen2)
    rope_scaling: dict[str, Any] | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = field(default_factory=tuple)
    name: str = ""

    @property
    def hf_architecture(self) -> str:
        return {v: k for k, v in ARCHITECTURES.items()}[self.architecture]

    @property
    def num_parameters(self) -> int:
        h, kv = self.hidden_size, self.num_kv_heads * self.head_dim
        q = self.num_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h + (q + 2 * kv if self.attention_bias else 0)
        mlp = 3 * h * self.intermediate_size
        per_layer = attn + mlp + 2 * h
        embed = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        return self.num_layers * per_layer + embed + h

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` transformers reads back into the same model (used by `convert`)."""
        out: dict[str, Any] = {
            "architectures": [self.hf_architecture],
            "model_type": self.architecture,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "torch_dtype": "float32",
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_ids) if len(self.eos_token_ids) != 1 else self.eos_token_ids[0],
        }
        if self.architecture == "llama":
            out["attention_bias"] = self.attention_bias
            out["mlp_bias"] = False
        else:
            out["use_sliding_window"] = False
        return out


def _require(cfg: dict[str, Any], key: str, kind: type, source: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise CheckpointError(f"{source}: field {key!r} is missing; expected a {kind.__name__}", path=source, field=key)
    value = cfg[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CheckpointError(
            f"{source}: field {key!r} is {value!r}; expected a {kind.__name__}", path=source, field=key
        )
    return value


def _rope_settings(cfg: dict[str, Any], source: str) -> tuple[float, dict[str, Any] | None]:
    """(rope_theta, rope_scaling) from either the classic keys or transformers 5's `rope_parameters`."""
    params = cfg.get("rope_parameters")
    if isinstance(params, dict):
        theta = params.get("rope_theta", cfg.get("rope_theta"))
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
    else:
        theta = cfg.get("rope_theta", 10000.0)
        scaling = dict(cfg["rope_scaling"]) if isinstance(cfg.get("rope_scaling"), dict) else None
    if not isinstance(theta, int | float) or isinstance(theta, bool) or theta <= 0:
        raise CheckpointError(f"{source}: field 'rope_theta' is {theta!r}; expected a positive number",
                              path=source, field="rope_theta")
    if not scaling:
        return float(theta), None
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise CheckpointError(
            f"{source}: field 'rope_scaling' has type {rope_type!r}; expected one of {SUPPORTED_ROPE_TYPES}",
            path=source, field="rope_scaling",
        )
    if rope_type == "default":
        return float(theta), None
    needed = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in needed if k not in scaling]
    if missing:
        raise CheckpointError(f"{source}: llama3 'rope_scaling' lacks {missing}", path=source, field="rope_scaling")
    return float(theta), {"rope_type": "llama3", **{k: scaling[k] for k in needed}}


def config_from_hf(cfg: dict[str, Any], source: str = "config.json") -> ModelConfig:
    """Validate a parsed `config.json` and turn it into a `ModelConfig`."""
    archs = cfg.get("architectures") or []
    arch = next((ARCHITECTURES[a] for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        model_type = cfg.get("model_type")
        arch = model_type if model_type in ARCHITECTURES.values() else None
    if arch is None:
        raise CheckpointError(
            f"{source}: field 'architectures' is {archs!r}; expected one of {sorted(ARCHITECTURES)}",
            path=source, field="architectures",
        )
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise CheckpointError(f"{source}: field 'hidden_act' is {act!r}; expected 'silu'", path=source, field="hidden_act")
    if cfg.get("use_sliding_window"):
        raise CheckpointError(f"{source}: field 'use_sliding_window' is true; sliding-window attention is "
                              "not supported", path=source, field="use_sliding_window")
    if cfg.get("mlp_bias"):
        raise CheckpointError(f"{source}: field 'mlp_bias' is true; expected false", path=source, field="mlp_bias")
    hidden = _require(cfg, "hidden_size", int, source)
    heads = _require(cfg, "num_attention_heads", int, source)
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or hidden // heads
    if heads <= 0 or kv_heads <= 0 or heads % kv_heads:
        raise CheckpointError(f"{source}: num_attention_heads={heads} is not a multiple of "
                              f"num_key_value_heads={kv_heads}", path=source, field="num_key_value_heads")
    if head_dim % 2:
        raise CheckpointError(f"{source}: head_dim={head_dim} is odd; RoPE needs an even head size",
                              path=source, field="head_dim")
    theta, scaling = _rope_settings(cfg, source)
    eos = cfg.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
    return ModelConfig(
        architecture=arch,
        vocab_size=_require(cfg, "vocab_size", int, source),
        hidden_size=hidden,
        intermediate_size=_require(cfg, "intermediate_size", int, source),
        num_layers=_require(cfg, "num_hidden_layers", int, source),
        num_heads=heads,
        num_kv_heads=int(kv_heads),
        head_dim=int(head_dim),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=arch == "qwen2" or bool(cfg.get("attention_bias", False)),
        bos_token_id=cfg.get("bos_token_id"),
        eos_token_ids=eos_ids,
        name=str(cfg.get("_name_or_path", "")),
    )
