"""Rollouts: sample a group of completions of one prompt from the policy, batched over the group.

The group shares its prompt, so its rows have equal length and run as one batch through the
engine's own pieces: the model's SDPA path over a `KVCache` with one row per sample, and the
engine's `Sampler` (temperature / top-p processors, seeded generator). A row that emits a stop
token keeps decoding with the others but everything after its stop is dropped. GRPO and PPO both
take their experience from here, and rejection sampling uses it to draft SFT examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from model_core.kv_cache import KVCache
from model_core.sampling import Sampler, SamplingParams
from model_core.tokenizer import Tokenizer


@dataclass
class Group:
    """One prompt and its sampled completions (token ids without the stop token) and texts."""

    prompt_ids: list[int]
    completions: list[list[int]]
    texts: list[str]
    stopped: list[bool]
    meta: dict[str, Any] = field(default_factory=dict)
    rewards: list[float] = field(default_factory=list)


@torch.no_grad()
def sample_group(model: nn.Module, prompt_ids: Sequence[int], n: int, max_new_tokens: int, *,
                 stop_ids: Iterable[int], temperature: float = 1.0, top_p: float = 1.0,
                 seed: int | None = None) -> tuple[list[list[int]], list[bool]]:
    """`n` completions of `prompt_ids` (each cut before its first stop token) and whether each stopped."""
    if n <= 0 or max_new_tokens <= 0:
        raise ValueError(f"need n > 0 and max_new_tokens > 0, got n={n}, max_new_tokens={max_new_tokens}")
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    cache = KVCache(model.config, len(prompt_ids) + max_new_tokens, batch=n, dtype=dtype)
    ids = torch.tensor([list(prompt_ids)] * n)
    positions = torch.arange(len(prompt_ids))[None].expand(n, -1)
    logits = model(ids, positions, cache, attention="sdpa")[:, -1]
    greedy = temperature == 0
    sampler = Sampler(SamplingParams(max_tokens=max_new_tokens, temperature=1.0 if greedy else temperature,
                                     top_p=top_p, seed=seed, greedy=greedy))
    stops = set(stop_ids)
    generated: list[list[int]] = [[] for _ in range(n)]
    done = [False] * n
    stopped = [False] * n
    position = len(prompt_ids)
    for step in range(max_new_tokens):
        tokens = sampler.sample_batch(logits, generated)
        for i, t in enumerate(tokens):
            if done[i]:
                continue
            if t in stops:
                done[i] = stopped[i] = True
            else:
                generated[i].append(t)
        if all(done) or step + 1 == max_new_tokens:
            break
        logits = model(torch.tensor(tokens)[:, None], torch.full((n, 1), position), cache, attention="sdpa")[:, -1]
        position += 1
    model.train(was_training)
    return generated, stopped


def rollout(model: nn.Module, tokenizer: Tokenizer, prompt_ids: Sequence[int], n: int, max_new_tokens: int, *,
            stop_ids: Iterable[int], temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
            meta: dict[str, Any] | None = None) -> Group:
    completions, stopped = sample_group(model, prompt_ids, n, max_new_tokens, stop_ids=stop_ids,
                                        temperature=temperature, top_p=top_p, seed=seed)
    texts = [tokenizer.decode(c, skip_special_tokens=False) for c in completions]
    return Group(list(prompt_ids), completions, texts, stopped, dict(meta or {}))


def group_tensors(group: Group, pad_id: int, stop_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """ids [n, P+T] (prompt + completion, plus the stop token where the sample stopped) and the
    action mask [n, P+T-1] aligned with `token_logprobs`: 1 where position t predicts a sampled token."""
    rows = []
    for completion, stopped in zip(group.completions, group.stopped, strict=True):
        tail = [stop_id] if stopped and stop_id is not None else []
        rows.append(group.prompt_ids + completion + tail)
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length - 1))
    p = len(group.prompt_ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, p - 1:len(row) - 1] = 1.0  # logprob index t scores token t+1
    return ids, mask
