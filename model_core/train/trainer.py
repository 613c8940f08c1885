"""The optimisation loop shared by every stage: AdamW, warm-up + cosine, accumulation, resume.

A stage supplies `loss_fn(step, micro)` returning the loss of one micro-batch; which examples that
is must depend only on `(step, micro)` (see `batch_indices`), so a run resumed from a checkpoint sees
the same batches, and draws the same losses, as one that never stopped. The checkpoint
(`<dir>/<name>.pt`, written atomically every `checkpoint_every` steps and at the end) holds the
trainable tensors, optimiser and scheduler state, the step and the loss history.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm


@dataclass
class TrainConfig:
    steps: int
    lr: float = 2e-4
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    grad_accum: int = 1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps <= 0 or self.grad_accum <= 0 or self.lr <= 0:
            raise ValueError(f"steps, grad_accum and lr must be positive: {asdict(self)}")


def warmup_cosine(step: int, cfg: TrainConfig) -> float:
    """LR multiplier: linear warm-up to 1, then cosine down to `min_lr_ratio` at `steps`."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def batch_indices(n_items: int, batch_size: int, index: int, seed: int) -> list[int]:
    """The `index`-th batch of an endless sequence of shuffled epochs; depends only on its arguments."""
    if n_items <= 0:
        raise ValueError("no training items")
    per_epoch = max(n_items // batch_size, 1)
    epoch, slot = divmod(index, per_epoch)
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    picked = order[slot * batch_size:(slot + 1) * batch_size]
    return picked if len(picked) == batch_size else (picked + order)[:batch_size]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
    extras: dict[str, list[float]] = field(default_factory=dict)


LossFn = Callable[[int, int], torch.Tensor | tuple[torch.Tensor, dict[str, float]]]


class Trainer:
    """Optimises `model`'s trainable parameters (those with requires_grad) with `loss_fn`."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, *, name: str, state_dir: Path | None = None,
                 extra_modules: dict[str, nn.Module] | None = None, progress: bool = True) -> None:
        self.model, self.cfg, self.name, self.progress = model, cfg, name, progress
        self.modules = {"model": model, **(extra_modules or {})}
        self.params = {f"{prefix}.{n}": p for prefix, m in self.modules.items()
                       for n, p in m.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError(f"{name}: nothing to train (no parameter requires grad)")
        self.optimizer = torch.optim.AdamW(list(self.params.values()), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           betas=(0.9, 0.95))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: warmup_cosine(s, cfg))
        self.state_path = Path(state_dir) / f"{name}.pt" if state_dir else None
        self.step = 0
        self.result = TrainResult()

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        state = {"step": self.step, "params": {k: p.detach().clone() for k, p in self.params.items()},
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "losses": self.result.losses, "extras": self.result.extras, "config": asdict(self.cfg)}
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)  # never a half-written checkpoint

    def try_resume(self) -> bool:
        if self.state_path is None or not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location="cpu", weights_only=False)
        missing = set(self.params) ^ set(state["params"])
        if missing:
            raise ValueError(f"{self.state_path}: checkpoint does not match the model ({sorted(missing)[:3]})")
        with torch.no_grad():
            for k, p in self.params.items():
                p.copy_(state["params"][k])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        self.result = TrainResult(losses=list(state["losses"]), resumed_from=self.step,
                                  extras={k: list(v) for k, v in state.get("extras", {}).items()})
        return True

    @property
    def done(self) -> bool:
        return self.step >= self.cfg.steps

    # ------------------------------------------------------------------ the loop

    def update(self, micro_losses: list[Callable[[], torch.Tensor | tuple[torch.Tensor, dict[str, float]]]],
               step_scheduler: bool = True) -> tuple[float, dict[str, float]]:
        """One optimiser step over the accumulated micro-batch losses; returns (mean loss, extras)."""
        self.optimizer.zero_grad(set_to_none=True)
        total, extras = 0.0, {}
        for compute in micro_losses:
            out = compute()
            loss, info = out if isinstance(out, tuple) else (out, {})
            (loss / len(micro_losses)).backward()
            total += float(loss.detach()) / len(micro_losses)
            for k, v in info.items():
                extras[k] = extras.get(k, 0.0) + v / len(micro_losses)
        torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.cfg.max_grad_norm)
        self.optimizer.step()
        if step_scheduler:
            self.scheduler.step()
        return total, extras

    def record(self, loss: float, extras: dict[str, float]) -> None:
        """Count one step, log it, and checkpoint when due."""
        self.step += 1
        self.result.losses.append(loss)
        for k, v in extras.items():
            self.result.extras.setdefault(k, []).append(v)
        if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
            self.save()

    def fit(self, loss_fn: LossFn, until: int | None = None) -> TrainResult:
        """Train to `cfg.steps` (or stop early at step `until`, as an interruption would)."""
        self.try_resume()
        stop = min(self.cfg.steps, until if until is not None else self.cfg.steps)
        for m in self.modules.values():
            m.train()
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.name, disable=not self.progress,
                   dynamic_ncols=True, leave=False)
        try:
            while self.step < stop:
                step = self.step
                total, extras = self.update([lambda m=m, s=step: loss_fn(s, m) for m in range(self.cfg.grad_accum)])
                self.record(total, extras)
                if self.step == stop:
                    self.save()
                bar.update(1)
                bar.set_postfix(loss=f"{total:.4f}", **{k: f"{v:.3f}" for k, v in list(extras.items())[:2]})
        finally:
            bar.close()
            for m in self.modules.values():
                m.eval()
        return self.result


def save_loss_curve(curves: dict[str, list[float]], path: Path, title: str = "training loss") -> Path | None:
    """A PNG of one or more loss curves; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, values in curves.items():
        if values:
            ax.plot(range(1, len(values) + 1), values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
