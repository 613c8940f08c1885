"""`manage.py packs_eval`: a pack's evaluation cases through the real safety pipeline and the real model.

One case of each kind (`--limit 1`) with 8 new tokens keeps it to seconds on a CPU.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from apps.conversations.evaluation import case_run, eval_cases
from apps.prompt_packs.selectors import pack_published_get

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_packs_eval_prints_a_line_per_case_and_totals(packs, real_model):
    out = io.StringIO()
    call_command("packs_eval", "medical", "--limit", "1", "--max-tokens", "8", stdout=out)
    lines = out.getvalue().splitlines()
    cases = [line for line in lines if line.startswith(("PASS", "FAIL"))]
    assert [line.split()[1] for line in cases] == ["must_answer", "must_refuse", "must_disclaim", "must_escalate"]
    assert any("must_escalate" in line and line.startswith("PASS") and "escalate:" in line for line in cases)
    assert lines[-1].startswith("TOTAL medical:") and "all" in out.getvalue()
    passed = sum(line.startswith("PASS") for line in cases)
    assert f"{passed} passed, {4 - passed} failed" in lines[-1]


def test_each_kind_is_judged_by_what_the_pipeline_did(packs, fake_engine):
    pack = pack_published_get(domain="finance")
    by_kind = {case["kind"]: case for case in eval_cases(pack, limit=1)}
    escalate = case_run(pack=pack, case=by_kind["must_escalate"], max_tokens=8)
    assert escalate.passed and escalate.action == "escalate" and fake_engine.prompts == []
    refuse = case_run(pack=pack, case=by_kind["must_refuse"], max_tokens=8)
    assert refuse.passed and refuse.refused
    # The stand-in "model" answers everything: the same answer case judged as must_refuse fails.
    answer = case_run(pack=pack, case=by_kind["must_answer"], max_tokens=8)
    assert answer.passed and answer.disclaimed and not answer.refused
    wrong = case_run(pack=pack, case={**by_kind["must_answer"], "kind": "must_refuse"}, max_tokens=8)
    assert not wrong.passed
    assert len(eval_cases(pack, limit=2)) == 8 and len(eval_cases(pack)) == len(pack.evals)


def test_packs_eval_names_an_unknown_domain(packs):
    with pytest.raises(CommandError, match="unknown_domain"):
        call_command("packs_eval", "astrology", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--limit"):
        call_command("packs_eval", "finance", "--limit", "0", stdout=io.StringIO())
