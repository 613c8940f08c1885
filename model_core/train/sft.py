"""Supervised fine-tuning on chat examples: loss on the assistant's tokens of packed sequences.

Works on a LoRA-wrapped model (only the adapters train) or on a plain tiny model (every weight
trains, full fine-tuning); the difference is only which parameters require grad.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from model_core.train.data import ChatExample, ChatRenderer, PackedBatch, pack_sequences, pad_token_id
from model_core.train.modeling import masked_lm_loss
from model_core.train.trainer import TrainConfig, Trainer, TrainResult, batch_indices


def pack_examples(renderer: ChatRenderer, examples: Sequence[ChatExample], seq_len: int) -> PackedBatch:
    if not examples:
        raise ValueError("no SFT examples")
    encoded = [renderer.encode(e, max_len=seq_len) for e in examples]
    return pack_sequences(encoded, seq_len, pad_token_id(renderer.tokenizer))


def sft_train(model: nn.Module, packed: PackedBatch, cfg: TrainConfig, *, batch_size: int,
              state_dir: Path | None = None, name: str = "sft", progress: bool = True,
              until: int | None = None) -> TrainResult:
    """Train on `packed` rows, `batch_size` rows per micro-batch; resumable from `state_dir`."""
    def loss_fn(step: int, micro: int) -> torch.Tensor:
        idx = batch_indices(len(packed), batch_size, step * cfg.grad_accum + micro, cfg.seed)
        return masked_lm_loss(model, packed.ids[idx], packed.mask[idx])

    trainer = Trainer(model, cfg, name=name, state_dir=state_dir, progress=progress)
    return trainer.fit(loss_fn, until=until)


@torch.no_grad()
def packed_loss(model: nn.Module, packed: PackedBatch, batch_size: int = 4) -> float:
    """Mean assistant-token loss over all rows (evaluation, no gradient)."""
    model.eval()
    total, weight = 0.0, 0.0
    for start in range(0, len(packed), batch_size):
        ids, mask = packed.ids[start:start + batch_size], packed.mask[start:start + batch_size]
        n = float(mask[:, 1:].sum())
        if n:
            total += float(masked_lm_loss(model, ids, mask)) * n
            weight += n
    return total / max(weight, 1.0)
