"""SFT: a step lowers the loss on its batch, resuming continues the same loss curve, LoRA adapters
save small, merge exactly, and the PNG loss curve is written."""

from __future__ import annotations

import copy

import torch

from model_core.train.domain import load_domain_examples
from model_core.train.lora import apply_lora, merge_adapter, save_adapter, trainable_parameters
from model_core.train.modeling import all_logits, masked_lm_loss
from model_core.train.sft import pack_examples, packed_loss, sft_train
from model_core.train.trainer import TrainConfig, save_loss_curve, warmup_cosine


def _packed(renderer, packs, n=12):
    return pack_examples(renderer, load_domain_examples(packs)[:n], seq_len=192)


def test_one_full_finetuning_step_lowers_the_loss_on_its_batch(tiny, renderer, packs) -> None:
    packed = _packed(renderer, packs)
    model = tiny.model
    with torch.no_grad():
        before = float(masked_lm_loss(model, packed.ids[:2], packed.mask[:2]))
    cfg = TrainConfig(steps=1, lr=3e-3)
    sft_train(model, type(packed)(packed.ids[:2], packed.mask[:2]), cfg, batch_size=2, progress=False)
    with torch.no_grad():
        after = float(masked_lm_loss(model, packed.ids[:2], packed.mask[:2]))
    assert after < before - 0.01


def test_lora_trains_only_adapters_and_lowers_the_loss(tiny, renderer, packs) -> None:
    model = tiny.model
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    apply_lora(model, rank=4, alpha=8)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    assert len(trainable_parameters(model)) == 2 * 4 * len(model.layers)  # A and B on all 4 block linears
    packed = _packed(renderer, packs, 6)
    before = packed_loss(model, packed)
    sft_train(model, packed, TrainConfig(steps=8, lr=1e-2), batch_size=2, progress=False)
    assert packed_loss(model, packed) < before - 0.05
    base_now = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(v, frozen[k.replace(".base.", ".")]) for k, v in base_now.items())


def test_resume_continues_the_same_loss_curve(tiny_dir, renderer, packs, tmp_path) -> None:
    from model_core.checkpoint import load_checkpoint

    packed = _packed(renderer, packs)
    cfg = TrainConfig(steps=6, lr=5e-3, warmup_steps=2, grad_accum=2, checkpoint_every=100)

    def fresh():
        torch.manual_seed(1)
        m = load_checkpoint(tiny_dir, progress=False).model
        apply_lora(m, rank=4, alpha=8)
        return m

    straight = sft_train(fresh(), packed, cfg, batch_size=2, progress=False).losses
    state = tmp_path / "state"
    first = sft_train(fresh(), packed, cfg, batch_size=2, state_dir=state, progress=False, until=3)
    assert len(first.losses) == 3 and (state / "sft.pt").is_file()
    resumed = sft_train(fresh(), packed, cfg, batch_size=2, state_dir=state, progress=False)
    assert resumed.resumed_from == 3
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(straight), rtol=1e-4, atol=1e-5)


def test_adapter_merges_into_the_base_to_the_same_logits(tiny, tmp_path) -> None:
    base = copy.deepcopy(tiny.model)
    model = tiny.model
    apply_lora(model, rank=4, alpha=8)
    for p in trainable_parameters(model):
        torch.nn.init.normal_(p, std=0.05)
    path = save_adapter(model, tmp_path / "adapter.safetensors")
    assert path.stat().st_size < 200_000
    assert merge_adapter(base, path) == 4 * len(base.layers)
    ids = torch.randint(0, base.config.vocab_size, (2, 16))
    torch.testing.assert_close(all_logits(base, ids), all_logits(model, ids), rtol=1e-4, atol=1e-4)


def test_schedule_warms_up_then_decays_and_curve_png_is_written(tmp_path) -> None:
    cfg = TrainConfig(steps=10, warmup_steps=2, min_lr_ratio=0.1)
    lrs = [warmup_cosine(s, cfg) for s in range(10)]
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[2] == 1.0
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False)) and lrs[-1] < 0.2
    png = save_loss_curve({"sft": [3.0, 2.0, 1.5]}, tmp_path / "loss.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"
