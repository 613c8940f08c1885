"""Training-side views of `model_core.model.Transformer`: hidden states, log-probabilities, losses.

The engine's `Transformer.forward` returns logits only. The reward model and PPO's value head need
the final hidden states, so `hidden_states` runs that forward with the output head swapped out (a
`return_hidden=True` flag on `Transformer.forward` would make this wrapper unnecessary). Sequences
are right-padded: under causal attention no real token sees a pad, so no attention mask is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def hidden_states(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Final-norm hidden states [B, T, H] of `ids` [B, T] at positions 0..T-1, no KV cache.

    Runs the model's own forward with the output head swapped for an identity for the duration of
    the call (training is single-threaded), so it follows whatever the forward does and skips the
    vocabulary projection the reward model and value head do not need."""
    head = model.lm_head
    model.lm_head = nn.Identity()
    try:
        return all_logits(model, ids)
    finally:
        model.lm_head = head


def all_logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] at every position (the model's forward with `last_only=False`)."""
    positions = torch.arange(ids.shape[1], device=ids.device)[None].expand(ids.shape[0], -1)
    return model(ids, positions, None, attention="sdpa", last_only=False)


def masked_lm_loss(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens where `mask` is 1 (the assistant's)."""
    logits = all_logits(model, ids)[:, :-1].float()
    targets, weights = ids[:, 1:], mask[:, 1:].to(logits.dtype)
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (losses * weights.reshape(-1)).sum() / weights.sum().clamp(min=1.0)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[:, t+1] | ids[:, :t+1]) for every t: [B, T-1], from logits [B, T, V]."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, ids[:, 1:, None]).squeeze(-1)


def sequence_logprobs(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return token_logprobs(all_logits(model, ids), ids)
