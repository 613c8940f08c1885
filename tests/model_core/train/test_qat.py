"""Fake int8 quantisation: matches the engine's int8 weights, passes gradients straight through,
and quantisation-aware training narrows the int8-vs-float gap of a trained model."""

from __future__ import annotations

import copy

import torch

from model_core.quantize import quantize_model_int8, quantize_per_channel
from model_core.train.domain import load_domain_examples
from model_core.train.lora import LoRALinear, apply_lora, merge_lora_modules
from model_core.train.qat import QATLinear, disable_qat, enable_qat, fake_quant_int8
from model_core.train.sft import pack_examples, packed_loss, sft_train
from model_core.train.trainer import TrainConfig


def test_fake_quant_equals_the_engine_int8_weights_and_is_straight_through() -> None:
    w = torch.randn(8, 16, requires_grad=True)
    q, scales = quantize_per_channel(w)
    torch.testing.assert_close(fake_quant_int8(w), q.float() * scales[:, None])
    fake_quant_int8(w).sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))


def test_enable_qat_switches_lora_and_plain_layers(tiny) -> None:
    model = tiny.model
    n = enable_qat(model)
    assert n == 4 * len(model.layers) and isinstance(model.layers[0].attn.wqkv, QATLinear)
    disable_qat(model)
    assert isinstance(model.layers[0].attn.wqkv, torch.nn.Linear)
    apply_lora(model, rank=2, alpha=2)
    enable_qat(model)
    assert all(m.fake_quant for m in model.modules() if isinstance(m, LoRALinear))


def _int8_gap(model, packed) -> float:
    plain = merge_lora_modules(copy.deepcopy(model))
    disable_qat(plain)
    float_loss = packed_loss(plain, packed)
    quantize_model_int8(plain, include_embedding=False)
    for m in plain.modules():
        if hasattr(m, "kernel"):
            m.kernel = "dequant"  # float32 activations: the gap measured is the weights' alone
    return packed_loss(plain, packed) - float_loss


def test_qat_shrinks_the_int8_gap(tiny_dir, renderer, packs) -> None:
    from model_core.checkpoint import load_checkpoint

    packed = pack_examples(renderer, load_domain_examples(packs)[:8], seq_len=256)
    torch.manual_seed(0)
    model = load_checkpoint(tiny_dir, progress=False).model
    sft_train(model, packed, TrainConfig(steps=40, lr=1e-2), batch_size=4, progress=False)
    ptq_gap = _int8_gap(model, packed)
    enable_qat(model)
    sft_train(model, packed, TrainConfig(steps=20, lr=2e-3), batch_size=4, progress=False)
    qat_gap = _int8_gap(model, packed)
    assert abs(qat_gap) < abs(ptq_gap), (ptq_gap, qat_gap)
