"""int8 weight-only quantisation against the float reference on a small random Llama-like model.

Stated tolerances (per-row int8 of Gaussian weights, two layers, 128 wide): logits of the int8 model
stay within 3% relative L2 error of float32, with the bf16-activation CPU kernel and with the float
dequantise path (measured: 1.0-2.1%); the top token agrees at >= 90% of positions; resident weight bytes
fall by at least 60%. GGUF Q8_0 tensors load straight to int8 and agree with "dequantise, then
quantise per channel", exactly so for rows whose block scales agree.
"""

from __future__ import annotations

import copy
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from gguf import quants
from torch import nn

from model_core.config import ModelConfig
from model_core.model import Transformer
from model_core.quantize import (
    Int8Embedding,
    Int8Linear,
    apply_int8_state_dict,
    int8_from_q8_0,
    int8_skeleton,
    int8_state_dict,
    load_int8,
    quantize_model_int8,
    quantize_per_channel,
    resident_bytes,
    save_int8,
    wiki_text,
    windowed_perplexity,
)


def tiny_config(tied: bool = True, bias: bool = False) -> ModelConfig:
    return ModelConfig(architecture="qwen2" if bias else "llama", vocab_size=512, hidden_size=128,
                       intermediate_size=384, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=32,
                       rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=512,
                       tie_word_embeddings=tied, attention_bias=bias)


def random_model(tied: bool = True, bias: bool = False, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(tiny_config(tied, bias))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.08 if p.dim() == 2 else 0.5)
    return model.eval()


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(ids.shape[1])[None].expand_as(ids)
    with torch.no_grad():
        return model(ids, positions, last_only=False)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("tied", "bias"), [(True, False), (False, True)])
@pytest.mark.parametrize("kernel", ["int8pack", "dequant"])
def test_int8_logits_stay_close_to_float(tied: bool, bias: bool, kernel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Int8Linear, "kernel", kernel)
    model = random_model(tied, bias)
    ids = torch.randint(0, 512, (2, 40), generator=torch.Generator().manual_seed(1))
    ref = logits(model, ids)
    out = logits(quantize_model_int8(copy.deepcopy(model)), ids)
    assert rel_err(out, ref) < 0.03
    agree = (out.argmax(-1) == ref.argmax(-1)).float().mean()
    assert agree >= 0.9


def test_every_linear_and_the_embedding_are_swapped_and_tied_weights_stay_shared() -> None:
    model = quantize_model_int8(random_model(tied=True))
    assert not [n for n, m in model.named_modules() if isinstance(m, nn.Linear | nn.Embedding)]
    assert isinstance(model.embed, Int8Embedding) and isinstance(model.lm_head, Int8Linear)
    assert model.lm_head.weight is model.embed.weight


@pytest.mark.parametrize("tied", [True, False])
def test_resident_weight_bytes_fall_by_at_least_60_percent(tied: bool) -> None:
    model = random_model(tied=tied)
    before = resident_bytes(model)
    after = resident_bytes(quantize_model_int8(model))
    assert after <= 0.4 * before, (before, after)


def test_int8_linear_matches_its_dequantised_weight() -> None:
    lin = nn.Linear(96, 40, bias=True).requires_grad_(False)
    q, scales = quantize_per_channel(lin.weight)
    assert q.dtype == torch.int8 and int(q.abs().max()) == 127
    x = torch.randn(3, 5, 96)
    expected = torch.nn.functional.linear(x, q.float() * scales[:, None], lin.bias)
    Int8Linear.kernel = "dequant"
    try:
        assert torch.allclose(Int8Linear.from_linear(lin)(x), expected, atol=1e-5)
    finally:
        Int8Linear.kernel = "int8pack"
    assert rel_err(Int8Linear.from_linear(lin)(x), expected) < 0.01  # bf16 activations on CPU


def test_offline_int8_checkpoint_round_trips_through_safetensors(tmp_path) -> None:
    model = random_model(tied=True)
    ids = torch.randint(0, 512, (1, 16))
    expected = logits(quantize_model_int8(copy.deepcopy(model)), ids)
    sd = int8_state_dict(model.state_dict())
    assert sd["layers.0.attn.wqkv.weight"].dtype == torch.int8 and "layers.0.attn.wqkv.scales" in sd
    assert sd["lm_head.weight"] is sd["embed.weight"]
    save_int8(tmp_path / "model.int8.safetensors", sd)
    loaded = load_int8(tmp_path / "model.int8.safetensors")
    assert loaded["lm_head.weight"] is loaded["embed.weight"]
    with torch.device("meta"):
        skeleton = Transformer(tiny_config(tied=True))
    restored = apply_int8_state_dict(skeleton, loaded)
    assert torch.equal(logits(restored, ids), expected)


def test_skeleton_filled_row_range_by_row_range_equals_the_swapped_model() -> None:
    model = random_model(tied=True)
    ids = torch.randint(0, 512, (1, 12))
    expected = logits(quantize_model_int8(copy.deepcopy(model)), ids)
    with torch.device("meta"):
        skeleton = Transformer(tiny_config(tied=True))
    int8_skeleton(skeleton)
    assert skeleton.lm_head.weight is skeleton.embed.weight
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            target = skeleton.get_submodule(name)
            q, scales = quantize_per_channel(module.weight)
            half = q.shape[0] // 2  # as a loader filling fused q/k/v rows part by part would
            target.weight[:half].copy_(q[:half])
            target.weight[half:].copy_(q[half:])
            target.scales.copy_(scales)
    mine = skeleton.state_dict()
    rest = {k: v for k, v in model.state_dict().items() if mine[k].dtype != torch.int8}  # the norms
    skeleton.load_state_dict(rest, strict=False, assign=True)
    assert torch.equal(logits(skeleton, ids), expected)


def test_load_int8_refuses_a_float_checkpoint(tmp_path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2, 2)}, str(tmp_path / "f.safetensors"))
    with pytest.raises(ValueError, match="not an int8 checkpoint"):
        load_int8(tmp_path / "f.safetensors")


def test_q8_0_loads_straight_to_int8_like_dequantise_then_quantise() -> None:
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((48, 256)) * rng.uniform(0.01, 0.2, (48, 1))).astype(np.float32)
    raw = quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0)
    q, scales, max_err = int8_from_q8_0(raw.tobytes(), (48, 256))
    dequant = torch.from_numpy(quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0))
    ref_q, ref_scales = quantize_per_channel(dequant)
    assert torch.equal(q, ref_q)
    assert torch.allclose(scales, ref_scales, rtol=1e-6)
    direct = q.float() * scales[:, None]
    assert float((direct - dequant).abs().max()) <= max_err + 1e-7
    assert max_err <= float(scales.max()) / 2 + 1e-7


def test_q8_0_rows_with_equal_block_scales_are_kept_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    n_rows, n_cols = 4, 128
    q = rng.integers(-100, 100, (n_rows, n_cols), dtype=np.int8)  # never reaches 127: a requantise would move it
    d = np.array([0.01, 0.02, 0.0, 0.5], dtype=np.float16)
    blocks = np.zeros((n_rows, n_cols // 32, 34), dtype=np.uint8)
    blocks[:, :, :2] = np.repeat(d[:, None], n_cols // 32, axis=1)[..., None].view(np.uint8)
    blocks[:, :, 2:] = q.reshape(n_rows, -1, 32).view(np.uint8)
    out_q, scales, max_err = int8_from_q8_0(blocks.tobytes(), (n_rows, n_cols))
    assert max_err == 0.0
    assert torch.equal(out_q[[0, 1, 3]], torch.from_numpy(q[[0, 1, 3]]))
    assert torch.equal(scales[[0, 1, 3]], torch.from_numpy(d[[0, 1, 3]].astype(np.float32)))
    assert not out_q[2].any()  # a zero-scale row is zero whatever its payload


def test_q8_0_with_wrong_size_or_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="does not match shape"):
        int8_from_q8_0(b"\0" * 34, (2, 32))
    with pytest.raises(ValueError, match="multiple of 32"):
        int8_from_q8_0(b"\0" * 34, (1, 30))


def test_misaligned_int8_weight_falls_back_instead_of_crashing() -> None:
    """`_weight_int8pack_mm` segfaults on int8 data not 16-byte aligned (tensors read from a
    safetensors buffer sit at any offset): such a weight takes the dequantise path."""
    lin = nn.Linear(128, 48, bias=False).requires_grad_(False)
    q, scales = quantize_per_channel(lin.weight)
    buf = torch.empty(q.numel() + 64, dtype=torch.int8)
    offset = (64 - buf.data_ptr() % 64) % 64 + 1
    module = Int8Linear(q, scales)
    module.weight = buf[offset:offset + q.numel()].view_as(q)  # as load_state_dict(assign=True) would
    module.weight.copy_(q)
    assert module.weight.data_ptr() % 16
    x = torch.randn(2, 128)
    assert torch.allclose(module(x), torch.nn.functional.linear(x, q.float() * scales[:, None]), atol=1e-5)


def test_windowed_perplexity_scores_every_token_once_with_its_window_context() -> None:
    import math

    model = random_model()
    ids = torch.randint(0, 512, (150,), generator=torch.Generator().manual_seed(0)).tolist()
    window, stride = 48, 20
    nll = 0.0
    for t in range(1, len(ids)):  # token t is scored in the first window that ends after it
        begin = 0
        while begin + window <= t:
            begin += stride
        with torch.no_grad():
            logits = model(torch.tensor([ids[begin:t]]), torch.arange(t - begin)[None], attention="sdpa")[0, -1]
        nll += float(torch.nn.functional.cross_entropy(logits[None].float(), torch.tensor([ids[t]])))
    ppl, scored = windowed_perplexity(model, ids, window, stride)
    assert scored == len(ids) - 1
    assert ppl == pytest.approx(math.exp(nll / scored), rel=1e-4)
    with pytest.raises(ValueError, match="stride"):
        windowed_perplexity(model, ids, 48, 48)


# ---------------------------------------------------------------- through the public Engine API

BUNDLED = Path(__file__).resolve().parents[2] / "var" / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def engines():
    """(float32 engine, int8 engine) of the bundled SmolLM2, loaded as the product loads them."""
    if not (BUNDLED / "config.json").is_file():
        pytest.skip("bundled model missing: run `python -m model_core prepare-bundled`")
    from model_core import Engine

    return Engine.load(BUNDLED, progress=False), Engine.load(BUNDLED, progress=False, quantize="int8")


def test_engine_load_int8_swaps_linears_and_stays_close_to_float(engines) -> None:
    """`Engine.load(..., quantize="int8")` serves int8 weights whose greedy logits track float32."""
    from model_core import Engine

    fp, q8 = engines
    assert q8.info["quantization"] == "int8"
    assert any(isinstance(m, Int8Linear) for m in q8.model.modules())
    ids = fp.tokenizer.encode("Compound interest means that interest is earned on")
    with torch.inference_mode():
        pos = torch.arange(len(ids))[None]
        a = fp.model(torch.tensor([ids]), pos)[0, -1].float().log_softmax(-1)
        b = q8.model(torch.tensor([ids]), pos)[0, -1].float().log_softmax(-1)
    assert int(a.argmax()) == int(b.argmax())
    # KL(float || int8) of the next-token distribution stays small
    assert float((a.exp() * (a - b)).sum()) < 0.05
    with pytest.raises(ValueError, match="zero"):
        Engine.load(BUNDLED, profile="zero", progress=False, quantize="int8")


def test_int8_engine_holds_no_float_copy_of_a_quantised_weight(engines) -> None:
    """Weight bytes fall by >= 60% (issue 4, check 3); the only float tensors left are the 1-D norms."""
    fp, q8 = engines
    assert resident_bytes(q8.model) <= 0.4 * resident_bytes(fp.model)
    floats = [n for n, t in [*q8.model.named_parameters(), *q8.model.named_buffers()]
              if t.is_floating_point() and t.dim() > 1]
    assert floats == []
    assert q8.model.lm_head.weight is q8.model.embed.weight  # tied head and embedding: one int8 matrix


def test_int8_perplexity_on_english_text_rises_at_most_1_2_percent(engines) -> None:
    """Issue 4, check 3 on a 4,096-token slice of the fixed Wikipedia text (windows of 1,024 tokens);
    benchmarks/int8.py runs the full 50,000 tokens (too slow for the suite on two cores)."""
    try:
        text = wiki_text()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    fp, q8 = engines
    ids = fp.tokenizer.encode(text, add_special_tokens=False)[:4097]
    fp_ppl, scored = windowed_perplexity(fp.model, ids, 1024)
    q8_ppl, _ = windowed_perplexity(q8.model, ids, 1024)
    assert scored == 4096
    assert 3 < fp_ppl < 50  # a sane English perplexity for this model: the text and model are right
    assert q8_ppl <= 1.012 * fp_ppl, (fp_ppl, q8_ppl)
