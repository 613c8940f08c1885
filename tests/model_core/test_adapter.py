"""Serving base + adapter (issue 9: "the engine's R1 profile serves base + adapter"): Engine.load merges a
LoRA adapter written by training into the weights before R1's packed layout or int8, so the served model
computes what the trained one did; a wrong or missing adapter fails at load with the layer named."""

from __future__ import annotations

import torch

from model_core import Engine, SamplingParams
from model_core.checkpoint import load_checkpoint
from model_core.train.lora import apply_lora, save_adapter, trainable_parameters

PROMPT = [1000 + 37 * i for i in range(12)]
GREEDY = SamplingParams(max_tokens=12, greedy=True)


def _trained_adapter(checkpoint_dir, path, *, std: float = 0.05, seed: int = 0):
    """A LoRA-wrapped copy of the checkpoint with random (non-zero) adapters: the 'trained' model."""
    torch.manual_seed(seed)
    model = load_checkpoint(checkpoint_dir, progress=False).model
    apply_lora(model, rank=4, alpha=8)
    for p in trainable_parameters(model):
        torch.nn.init.normal_(p, std=std)
    save_adapter(model, path)
    return model


def _greedy(model, prompt: list[int], steps: int) -> list[int]:
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            x = torch.tensor([ids])
            logits = model(x, torch.arange(len(ids))[None])[0, -1]
            ids.append(int(logits.argmax()))
    return ids[len(prompt):]


def test_r1_with_adapter_generates_what_the_trained_model_generates(checkpoints, tmp_path):
    path = tmp_path / "adapter.safetensors"
    trained = _trained_adapter(checkpoints["qwen2-r1"], path)
    base = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False)
    tuned = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False, adapter=path)
    [b] = base.generate([PROMPT], GREEDY)
    [t] = tuned.generate([PROMPT], GREEDY)
    assert tuned.info["adapter"] == str(path) and base.info["adapter"] is None
    assert t.token_ids == _greedy(trained, PROMPT, len(t.token_ids))
    assert t.token_ids != b.token_ids  # the adapter really changes the model (random B is not zero)
    zero = Engine.load(checkpoints["qwen2-r1"], profile="zero", progress=False, adapter=path)
    assert zero.generate([PROMPT], GREEDY)[0].token_ids == t.token_ids


def test_int8_with_adapter_merges_before_rounding(checkpoints, tmp_path):
    path = tmp_path / "adapter.safetensors"
    _trained_adapter(checkpoints["llama-untied"], path)
    fp32 = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, adapter=path)
    int8 = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, adapter=path, quantize="int8")
    ids = torch.tensor([PROMPT])
    pos = torch.arange(len(PROMPT))[None]
    with torch.no_grad():
        a, b = fp32.model(ids, pos)[0, -1], int8.model(ids, pos)[0, -1]
    assert int8.info["quantization"] == "int8" and int8.info["adapter"] == str(path)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0)
    assert cos > 0.99, f"int8 + adapter drifted from float + adapter (cosine {cos:.4f})"


def test_wrong_or_missing_adapter_is_refused_with_the_reason(checkpoints, tmp_path):
    path = tmp_path / "adapter.safetensors"
    _trained_adapter(checkpoints["qwen2-r1"], path)  # trained on another architecture and size
    import pytest

    with pytest.raises(ValueError, match=r"adapter for 'layers\.0\.|does not have|another base model"):
        Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, adapter=path)
    # same architecture and shapes, other weights: only the base probe can tell, and it does
    with pytest.raises(ValueError, match=r"another base model \(the weights of 'layers\.0\."):
        Engine.load(checkpoints["qwen2-tied-sharded"], profile="r1", progress=False, adapter=path)
    with pytest.raises(FileNotFoundError, match="no adapter file"):
        Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, adapter=tmp_path / "missing.safetensors")
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(foreign), metadata={"format": "other"})
    with pytest.raises(ValueError, match="not a Verity LoRA adapter"):
        Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, adapter=foreign)
