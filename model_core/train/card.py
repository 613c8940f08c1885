"""The model card of a recipe run: JSON for machines, Markdown for people (data sizes, steps,
losses, reward-model accuracy, RL rewards, evaluation table, time per stage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model_core.train.evaluate import results_table


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_card(out: Path, *, recipe: dict[str, Any], record: dict[str, Any], adapter: Path, base: Path,
               seconds: float) -> dict[str, Any]:
    card = {"recipe": recipe["name"], "base": str(base), "adapter": str(adapter),
            "adapter_bytes": adapter.stat().st_size, "lora_rank": recipe["lora_rank"],
            "lora_alpha": recipe["lora_alpha"], "stages": record, "seconds_this_invocation": round(seconds, 1)}
    (out / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    lines = [f"# Verity R1 adapter — recipe `{recipe['name']}`", "",
             f"- base checkpoint: `{base}`",
             f"- adapter: `{adapter.name}` ({adapter.stat().st_size / 1e6:.2f} MB, LoRA rank {recipe['lora_rank']}, "
             f"alpha {recipe['lora_alpha']}, every block linear; merged into the base at load)", ""]
    for stage, info in record.items():
        if stage == "eval":
            continue
        lines.append(f"## {stage}")
        lines += [f"- {k}: {_fmt(v)}" for k, v in info.items()]
        png = out / f"loss_{stage if stage != 'rejection' else 'rejection_sft'}.png"
        if png.is_file():
            lines.append(f"\n![{stage} loss]({png.name})")
        lines.append("")
    if "eval" in record:
        columns = {k: v for k, v in record["eval"].items() if isinstance(v, dict)}
        lines += ["## Evaluation (no safety filter)", "", results_table(columns)]
    (out / "CARD.md").write_text("\n".join(lines) + "\n")
    return card
