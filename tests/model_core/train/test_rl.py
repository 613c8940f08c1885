"""GRPO and PPO each raise a toy rule reward within a bounded number of steps; GAE/clipping pieces."""

from __future__ import annotations

import copy

import torch

from model_core.train.rl import RLConfig, RLPrompt, ValueHead, grpo_train, ppo_train
from model_core.train.rollout import group_tensors, rollout

TARGET = 64  # reward: share of sampled tokens with an id below TARGET (a rule the random model rarely meets)


def toy_reward(meta, completion_ids, text) -> float:
    return sum(t < TARGET for t in completion_ids) / max(len(completion_ids), 1)


def _prompts(renderer) -> list[RLPrompt]:
    msgs = [[{"role": "user", "content": q}] for q in ("What is a bond?", "What is a will?", "What is a fever?")]
    return [RLPrompt(renderer.prompt_ids(m), {}) for m in msgs]


def _mean(xs):
    return sum(xs) / len(xs)


def test_rollout_groups_are_batched_and_masked(tiny, renderer) -> None:
    prompt = _prompts(renderer)[0].ids
    eos = tiny.tokenizer.eos_token_id
    g = rollout(tiny.model, tiny.tokenizer, prompt, 4, 10, stop_ids=[eos], seed=3)
    again = rollout(tiny.model, tiny.tokenizer, prompt, 4, 10, stop_ids=[eos], seed=3)
    assert g.completions == again.completions  # seeded: reproducible
    assert len(g.completions) == 4 and all(len(c) <= 10 and eos not in c for c in g.completions)
    ids, mask = group_tensors(g, pad_id=0, stop_id=eos)
    for row, c, stopped in zip(mask, g.completions, g.stopped, strict=True):
        assert int(row.sum()) == len(c) + int(stopped) and int(row[: len(prompt) - 1].sum()) == 0


def test_grpo_raises_a_toy_rule_reward(tiny, renderer) -> None:
    policy = tiny.model
    reference = copy.deepcopy(policy)
    cfg = RLConfig(steps=14, prompts_per_step=2, group_size=8, max_new_tokens=8, lr=1e-2, epochs=2, kl_coef=0.01)
    result = grpo_train(policy, reference, tiny.tokenizer, _prompts(renderer), toy_reward, cfg, pad_id=0,
                        stop_ids=[tiny.tokenizer.eos_token_id], progress=False)
    rewards = result.extras["reward"]
    assert len(rewards) == 14
    assert _mean(rewards[-3:]) > _mean(rewards[:3]) + 0.15, rewards


def test_ppo_raises_a_toy_rule_reward(tiny, renderer) -> None:
    policy = tiny.model
    reference = copy.deepcopy(policy)
    value = ValueHead(policy.config.hidden_size)
    cfg = RLConfig(steps=14, prompts_per_step=2, group_size=8, max_new_tokens=8, lr=1e-2, epochs=2, kl_coef=0.01)
    result = ppo_train(policy, value, reference, tiny.tokenizer, _prompts(renderer), toy_reward, cfg, pad_id=0,
                       stop_ids=[tiny.tokenizer.eos_token_id], progress=False)
    rewards = result.extras["reward"]
    assert _mean(rewards[-3:]) > _mean(rewards[:3]) + 0.15, rewards
    assert any(p.abs().sum() > 0 for p in value.parameters())  # the critic learnt something


def test_rl_resumes_from_its_checkpoint(tiny, renderer, tmp_path) -> None:
    policy = tiny.model
    reference = copy.deepcopy(policy)
    cfg = RLConfig(steps=2, prompts_per_step=1, group_size=2, max_new_tokens=4, checkpoint_every=1)
    grpo_train(policy, reference, tiny.tokenizer, _prompts(renderer), toy_reward, cfg, pad_id=0,
               stop_ids=[tiny.tokenizer.eos_token_id], state_dir=tmp_path, progress=False)
    cfg.steps = 3
    result = grpo_train(policy, reference, tiny.tokenizer, _prompts(renderer), toy_reward, cfg, pad_id=0,
                        stop_ids=[tiny.tokenizer.eos_token_id], state_dir=tmp_path, progress=False)
    assert result.resumed_from == 2 and len(result.losses) == 3
    assert torch.isfinite(torch.tensor(result.losses)).all()
