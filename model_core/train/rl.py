"""Reinforcement learning on rule and reward-model rewards: GRPO and PPO over one rollout machinery.

Both algorithms take, per step, `prompts_per_step` prompts, sample `group_size` completions of each
(rollout.py), score them with `reward_fn(meta, completion_ids, text) -> float`, and update the policy
with a clipped importance-ratio objective for `epochs` passes over that experience:

- **GRPO** (DeepSeekMath / DeepSeek-R1): no critic; a sample's advantage is its reward standardised
  within its group, `(r - mean) / (std + eps)`, shared by all its tokens; a KL penalty to the frozen
  reference policy (the SFT model) is added to the loss with the unbiased "k3" estimator.
- **PPO** (RLHF as in InstructGPT): a value head on the policy's hidden states; the KL to the
  reference is folded into per-token rewards (`-kl_coef * (logp - logp_ref)`, the sequence reward at
  the last token), advantages by GAE(gamma, lambda), whitened; clipped policy and value losses.

Progress (mean reward per step) is the trainer's loss history's companion `extras["reward"]`, and the
Trainer checkpoints adapters, value head and optimiser so a stopped run resumes at its step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from model_core.train.modeling import hidden_states, sequence_logprobs, token_logprobs
from model_core.train.rollout import Group, group_tensors, rollout
from model_core.train.trainer import TrainConfig, Trainer, TrainResult, batch_indices

RewardFn = Callable[[dict[str, Any], list[int], str], float]


@dataclass
class RLPrompt:
    ids: list[int]
    meta: dict[str, Any]


@dataclass
class RLConfig:
    steps: int
    prompts_per_step: int = 2
    group_size: int = 4
    max_new_tokens: int = 64
    lr: float = 1e-4
    epochs: int = 2
    clip: float = 0.2
    kl_coef: float = 0.05
    temperature: float = 1.0
    top_p: float = 1.0
    gamma: float = 1.0
    lam: float = 0.95
    vf_coef: float = 0.5
    seed: int = 0
    checkpoint_every: int = 5


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def _collect(policy: nn.Module, tokenizer: Any, prompts: Sequence[RLPrompt], reward_fn: RewardFn, cfg: RLConfig,
             step: int, stop_ids: Sequence[int]) -> list[Group]:
    groups = []
    for j, i in enumerate(batch_indices(len(prompts), cfg.prompts_per_step, step, cfg.seed)):
        g = rollout(policy, tokenizer, prompts[i].ids, cfg.group_size, cfg.max_new_tokens, stop_ids=stop_ids,
                    temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed * 7919 + step * 131 + j,
                    meta=prompts[i].meta)
        g.rewards = [float(reward_fn(g.meta, c, t)) for c, t in zip(g.completions, g.texts, strict=True)]
        groups.append(g)
    return groups


class _Algorithm:
    """What differs between GRPO and PPO: per-group experience tensors and the loss on them."""

    def prepare(self, group: Group) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, exp: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError


class _GRPO(_Algorithm):
    def __init__(self, policy: nn.Module, reference: nn.Module, cfg: RLConfig, pad_id: int, stop_id: int | None):
        self.policy, self.reference, self.cfg, self.pad_id, self.stop_id = policy, reference, cfg, pad_id, stop_id

    @torch.no_grad()
    def prepare(self, group: Group) -> dict[str, torch.Tensor]:
        ids, mask = group_tensors(group, self.pad_id, self.stop_id)
        rewards = torch.tensor(group.rewards)
        adv = (rewards - rewards.mean()) / (rewards.std(unbiased=False) + 1e-4)
        return {"ids": ids, "mask": mask, "adv": adv[:, None].expand_as(mask),
                "old": sequence_logprobs(self.policy, ids), "ref": sequence_logprobs(self.reference, ids)}

    def loss(self, exp: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logp = sequence_logprobs(self.policy, exp["ids"])
        ratio = torch.exp(logp - exp["old"])
        clipped = torch.clamp(ratio, 1 - self.cfg.clip, 1 + self.cfg.clip)
        policy_loss = -torch.min(ratio * exp["adv"], clipped * exp["adv"])
        log_ref_ratio = exp["ref"] - logp
        kl = torch.exp(log_ref_ratio) - log_ref_ratio - 1  # k3: unbiased, always >= 0
        loss = _masked_mean(policy_loss + self.cfg.kl_coef * kl, exp["mask"])
        return loss, {"kl": float(_masked_mean(kl.detach(), exp["mask"]))}


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h.float()).squeeze(-1)


class _PPO(_Algorithm):
    def __init__(self, policy: nn.Module, value_head: ValueHead, reference: nn.Module, cfg: RLConfig, pad_id: int,
                 stop_id: int | None):
        self.policy, self.value_head, self.reference = policy, value_head, reference
        self.cfg, self.pad_id, self.stop_id = cfg, pad_id, stop_id

    def _forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = hidden_states(self.policy, ids)
        return token_logprobs(self.policy.lm_head(h), ids), self.value_head(h[:, :-1])

    @torch.no_grad()
    def prepare(self, group: Group) -> dict[str, torch.Tensor]:
        ids, mask = group_tensors(group, self.pad_id, self.stop_id)
        old, values = self._forward(ids)
        ref = sequence_logprobs(self.reference, ids)
        rewards = -self.cfg.kl_coef * (old - ref) * mask
        last = mask.shape[1] - 1 - mask.flip(1).argmax(dim=1)  # index of each row's final action
        rewards[torch.arange(len(ids)), last] += torch.tensor(group.rewards)
        values = values * mask
        adv = torch.zeros_like(rewards)
        running = torch.zeros(len(ids))
        for t in range(mask.shape[1] - 1, -1, -1):  # GAE, right to left; V after the last action is 0
            next_value = values[:, t + 1] if t + 1 < mask.shape[1] else torch.zeros(len(ids))
            delta = rewards[:, t] + self.cfg.gamma * next_value - values[:, t]
            running = (delta + self.cfg.gamma * self.cfg.lam * running) * mask[:, t]
            adv[:, t] = running
        returns = adv + values
        mean, std = _masked_mean(adv, mask), torch.sqrt(_masked_mean((adv - _masked_mean(adv, mask)) ** 2, mask))
        return {"ids": ids, "mask": mask, "old": old, "values": values, "returns": returns,
                "adv": (adv - mean) / (std + 1e-6)}

    def loss(self, exp: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        logp, values = self._forward(exp["ids"])
        ratio = torch.exp(logp - exp["old"])
        clipped = torch.clamp(ratio, 1 - self.cfg.clip, 1 + self.cfg.clip)
        policy_loss = _masked_mean(-torch.min(ratio * exp["adv"], clipped * exp["adv"]), exp["mask"])
        v_clipped = exp["values"] + torch.clamp(values - exp["values"], -self.cfg.clip, self.cfg.clip)
        value_loss = 0.5 * _masked_mean(torch.max((values - exp["returns"]) ** 2,
                                                  (v_clipped - exp["returns"]) ** 2), exp["mask"])
        return policy_loss + self.cfg.vf_coef * value_loss, {"value_loss": float(value_loss.detach())}


def _run(algo: _Algorithm, name: str, policy: nn.Module, extra: dict[str, nn.Module], tokenizer: Any,
         prompts: Sequence[RLPrompt], reward_fn: RewardFn, cfg: RLConfig, stop_ids: Sequence[int],
         state_dir: Path | None, progress: bool) -> TrainResult:
    if not prompts:
        raise ValueError(f"{name}: no prompts")
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, warmup_steps=0, min_lr_ratio=1.0,
                       checkpoint_every=cfg.checkpoint_every, seed=cfg.seed)
    trainer = Trainer(policy, tcfg, name=name, state_dir=state_dir, extra_modules=extra, progress=False)
    trainer.try_resume()
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=name, disable=not progress, leave=False)
    try:
        while not trainer.done:
            groups = _collect(policy, tokenizer, prompts, reward_fn, cfg, trainer.step, stop_ids)
            experience = [algo.prepare(g) for g in groups]
            total, extras = 0.0, {}
            for _ in range(cfg.epochs):
                total, extras = trainer.update([lambda e=e: algo.loss(e) for e in experience], step_scheduler=False)
            reward = sum(sum(g.rewards) for g in groups) / sum(len(g.rewards) for g in groups)
            trainer.scheduler.step()
            trainer.record(total, {**extras, "reward": reward})
            bar.update(1)
            bar.set_postfix(reward=f"{reward:.3f}", loss=f"{total:.3f}")
    finally:
        bar.close()
        policy.eval()
    return trainer.result


def grpo_train(policy: nn.Module, reference: nn.Module, tokenizer: Any, prompts: Sequence[RLPrompt],
               reward_fn: RewardFn, cfg: RLConfig, *, pad_id: int, stop_ids: Sequence[int],
               state_dir: Path | None = None, progress: bool = True) -> TrainResult:
    """Group-relative policy optimisation; `reference` is frozen (the SFT policy)."""
    reference.requires_grad_(False).eval()
    algo = _GRPO(policy, reference, cfg, pad_id, next(iter(stop_ids), None))
    return _run(algo, "grpo", policy, {}, tokenizer, prompts, reward_fn, cfg, stop_ids, state_dir, progress)


def ppo_train(policy: nn.Module, value_head: ValueHead, reference: nn.Module, tokenizer: Any,
              prompts: Sequence[RLPrompt], reward_fn: RewardFn, cfg: RLConfig, *, pad_id: int,
              stop_ids: Sequence[int], state_dir: Path | None = None, progress: bool = True) -> TrainResult:
    """PPO with a value head on the policy's hidden states, KL-shaped rewards and GAE."""
    reference.requires_grad_(False).eval()
    value_head.requires_grad_(True)
    algo = _PPO(policy, value_head, reference, cfg, pad_id, next(iter(stop_ids), None))
    return _run(algo, "ppo", policy, {"value": value_head}, tokenizer, prompts, reward_fn, cfg, stop_ids,
                state_dir, progress)
