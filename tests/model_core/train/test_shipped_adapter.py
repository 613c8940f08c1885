"""The R1 adapter kept in the repository (issue 9) is the trained one, and the R1 profile serves it: on
held-out benign domain questions it answers in the readable `<think>` format with the pack's disclaimer,
where the untouched base does neither. Real bundled model, greedy decoding, no safety filter (the model's
own behaviour). The prompts are fixed by rule: the first `must_answer` evaluation case of each domain.
Refusing harmful requests and escalating crises are not asserted here: the shipped adapter does not yet
reach them (8% and 33%, benchmarks/RESULTS.md, session 8), and the safety pipeline handles both in front
of the model. The full figures are `model_core eval`'s."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_core.adapter import merge_adapter
from model_core.checkpoint import load_checkpoint
from model_core.train.data import ChatRenderer
from model_core.train.evaluate import generate_all
from model_core.train.packs import DOMAINS, load_pack_evals, load_packs
from model_core.train.rewards import (
    disclaimer_present,
    format_ok,
    is_escalation,
    is_refusal,
    parse_completion,
)

SHIPPED = Path(__file__).resolve().parents[3] / "model_core" / "adapters" / "r1-domain" / "adapter.safetensors"


def _answered_with_disclaimer(row: dict, packs) -> bool:
    pack, answer = packs[row["domain"]], parse_completion(row["text"]).answer
    return (format_ok(row["text"]) and not is_refusal(answer, pack) and not is_escalation(answer, pack)
            and disclaimer_present(answer, pack))


def test_django_settings_serve_the_shipped_adapter_in_r1_by_default() -> None:
    from django.conf import settings

    assert SHIPPED.is_file(), "model_core/adapters/r1-domain/adapter.safetensors must ship (issue 9)"
    if Path(settings.VERITY_MODEL).name == "smollm2-135m-instruct":
        assert Path(settings.VERITY_R1_ADAPTER) == SHIPPED


@pytest.mark.slow
def test_the_shipped_adapter_answers_benign_questions_in_format_with_the_disclaimer(real_model: Path) -> None:
    packs, evals = load_packs(), load_pack_evals()
    cases = [next(c for c in evals if c.domain == d and c.kind == "must_answer") for d in DOMAINS]
    rows = {}
    for name in ("base", "tuned"):
        ckpt = load_checkpoint(real_model, progress=False)
        if name == "tuned":
            merge_adapter(ckpt.model, SHIPPED)
        ckpt.model.eval()
        stop = [t for t in (ckpt.tokenizer.eos_token_id, *ckpt.config.eos_token_ids) if t is not None]
        rows[name] = generate_all(ckpt.model, ChatRenderer(ckpt.tokenizer), cases, packs, 256, stop, progress=False)
    assert all(_answered_with_disclaimer(r, packs) for r in rows["tuned"]), [r["text"] for r in rows["tuned"]]
    assert not any(_answered_with_disclaimer(r, packs) for r in rows["base"])
