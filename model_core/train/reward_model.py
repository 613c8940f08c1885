"""Reward model: the base transformer plus a scalar head, trained with the Bradley–Terry loss.

The score of a (prompt, completion) sequence is a linear head on the final hidden state of its last
real token. On preference pairs, `-log sigmoid(r_chosen - r_rejected)` is minimised, which is the
Bradley–Terry model's likelihood of the observed preference. Accuracy on held-out pairs is the share
where the chosen completion scores higher.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from model_core.train.data import pad_batch
from model_core.train.modeling import hidden_states
from model_core.train.trainer import TrainConfig, Trainer, TrainResult, batch_indices


@dataclass
class PreferencePair:
    prompt_ids: list[int]
    chosen_ids: list[int]  # completion tokens only
    rejected_ids: list[int]


class RewardModel(nn.Module):
    """`backbone` (a Transformer, possibly LoRA-wrapped) + `head` mapping the last hidden state to a score."""

    def __init__(self, backbone: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.pad_id = pad_id

    def forward(self, sequences: Sequence[Sequence[int]]) -> torch.Tensor:
        ids, real = pad_batch(sequences, self.pad_id)
        h = hidden_states(self.backbone, ids)  # [B, T, H]
        last = real.sum(dim=1).long() - 1
        return self.head(h[torch.arange(len(sequences)), last].float()).squeeze(-1)

    @torch.no_grad()
    def score(self, sequences: Sequence[Sequence[int]], batch_size: int = 8) -> list[float]:
        self.eval()
        out: list[float] = []
        for start in range(0, len(sequences), batch_size):
            out += self(sequences[start:start + batch_size]).tolist()
        return out


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


def train_reward_model(rm: RewardModel, pairs: Sequence[PreferencePair], cfg: TrainConfig, *, batch_size: int,
                       state_dir: Path | None = None, name: str = "reward", progress: bool = True) -> TrainResult:
    if not pairs:
        raise ValueError("no preference pairs")
    rm.head.requires_grad_(True)

    def loss_fn(step: int, micro: int) -> tuple[torch.Tensor, dict[str, float]]:
        idx = batch_indices(len(pairs), batch_size, step * cfg.grad_accum + micro, cfg.seed)
        batch = [pairs[i] for i in idx]
        scores = rm([p.prompt_ids + p.chosen_ids for p in batch] + [p.prompt_ids + p.rejected_ids for p in batch])
        chosen, rejected = scores[:len(batch)], scores[len(batch):]
        return bradley_terry_loss(chosen, rejected), {"acc": float((chosen > rejected).float().mean())}

    # The head lives inside `rm`; train `rm` as the model so its checkpoint holds head and adapters.
    trainer = Trainer(rm, cfg, name=name, state_dir=state_dir, progress=progress)
    return trainer.fit(loss_fn)


def pair_accuracy(rm: RewardModel, pairs: Sequence[PreferencePair]) -> float:
    if not pairs:
        return float("nan")
    chosen = rm.score([p.prompt_ids + p.chosen_ids for p in pairs])
    rejected = rm.score([p.prompt_ids + p.rejected_ids for p in pairs])
    return sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
