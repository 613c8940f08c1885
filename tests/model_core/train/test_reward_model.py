"""The reward model (base + scalar head, Bradley–Terry) learns a separable toy preference and the
domain preference pairs it trains on really prefer the reference replies."""

from __future__ import annotations

import torch

from model_core.train.domain import load_domain_examples, preference_pairs
from model_core.train.reward_model import PreferencePair, RewardModel, pair_accuracy, train_reward_model
from model_core.train.rewards import rule_reward
from model_core.train.trainer import TrainConfig


def _toy_pairs(vocab: int, n: int, seed: int) -> list[PreferencePair]:
    """Chosen completions use low token ids, rejected ones high ids: separable by content."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(n):
        prompt = torch.randint(0, vocab, (4,), generator=g).tolist()
        chosen = torch.randint(0, vocab // 4, (6,), generator=g).tolist()
        rejected = torch.randint(3 * vocab // 4, vocab, (6,), generator=g).tolist()
        pairs.append(PreferencePair(prompt, chosen, rejected))
    return pairs


def test_reward_model_learns_a_separable_preference(tiny) -> None:
    vocab = tiny.config.vocab_size
    rm = RewardModel(tiny.model, pad_id=0)
    train, held_out = _toy_pairs(vocab, 32, seed=1), _toy_pairs(vocab, 16, seed=2)
    assert pair_accuracy(rm, held_out) <= 0.5  # zero head: every score ties before training
    result = train_reward_model(rm, train, TrainConfig(steps=30, lr=3e-3), batch_size=8, progress=False)
    assert result.losses[-1] < result.losses[0]
    assert pair_accuracy(rm, held_out) >= 0.9


def test_domain_pairs_prefer_what_the_rule_reward_prefers(renderer, packs) -> None:
    examples = load_domain_examples(packs)
    pairs = preference_pairs(renderer, examples, packs, per_example=2)
    assert len(pairs) == 2 * len(examples)
    tok = renderer.tokenizer
    for ex, pair in zip([e for e in examples for _ in range(2)], pairs, strict=True):
        meta = {**ex.meta, "pack": packs[ex.meta["domain"]]}
        chosen = tok.decode(pair.chosen_ids, skip_special_tokens=True)
        rejected = tok.decode(pair.rejected_ids, skip_special_tokens=True)
        assert rule_reward(meta, chosen) == 1.0, chosen
        assert rule_reward(meta, rejected) < 1.0, rejected
