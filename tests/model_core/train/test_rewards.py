"""The rule rewards: reasoning format, disclaimer, refusal/escalation behaviour, forbidden claims."""

from __future__ import annotations

import pytest

from model_core.train.rewards import (
    disclaimer_present,
    forbidden_claims,
    format_ok,
    is_escalation,
    is_refusal,
    parse_completion,
    rule_reward,
    rule_reward_parts,
)


def test_format_needs_closed_reasoning_and_an_answer() -> None:
    assert format_ok("<think>\nWeigh it.\n</think>\n\nAn answer.")
    assert format_ok("Weigh it.\n</think>\n\nAn answer.")  # the prompt opened the tag
    assert not format_ok("An answer without reasoning.")
    assert not format_ok("<think>\nstill thinking")
    assert not format_ok("<think>\n\n</think>\n\nAnswer")  # empty reasoning
    assert not format_ok("<think>x</think>")  # empty answer
    assert parse_completion("<think>a</think>b") .answer == "b"


def test_disclaimer_refusal_escalation_detection(packs) -> None:
    med = packs["medical"]
    assert disclaimer_present(f"Drink water.\n\n{med.disclaimer}", med)
    assert not disclaimer_present("Drink water.", med)
    assert is_refusal(med.refusals["dosing"], med) and is_refusal("I can't help with that request.", None)
    assert not is_refusal("Statins lower LDL cholesterol.", med)
    assert is_escalation(med.escalations["emergency"], med)
    assert not is_escalation(f"Some general advice first. {' '.join(['word'] * 60)} {med.escalations['crisis']}", med)


@pytest.mark.parametrize("text", ["I am a licensed doctor, trust me.", "You definitely have diabetes.",
                                  "This fund has guaranteed returns."])
def test_forbidden_claims_are_caught(packs, text) -> None:
    assert forbidden_claims(text, packs["medical"])


def test_rule_reward_ranks_the_right_behaviour_first(packs) -> None:
    fin = packs["finance"]
    good = f"<think>\nGeneral question.\n</think>\n\nIndex funds spread risk.\n\n{fin.disclaimer}"
    assert rule_reward({"kind": "answer", "pack": fin}, good) == 1.0
    refused_benign = f"<think>\nx\n</think>\n\n{fin.refusals['default']}"
    assert rule_reward({"kind": "answer", "pack": fin}, refused_benign) < 0.5
    assert rule_reward({"kind": "refuse", "pack": fin}, refused_benign) == 1.0
    crisis = f"<think>\nCrisis.\n</think>\n\n{fin.escalations['crisis']}\n\n{fin.disclaimer}"
    assert rule_reward_parts({"kind": "escalate", "pack": fin}, crisis)["behaviour"] == 1.0
    assert rule_reward({"kind": "escalate", "pack": fin}, good) < rule_reward({"kind": "escalate", "pack": fin}, crisis)
    claim = good.replace("Index funds spread risk.", "This is a sure thing with guaranteed returns.")
    assert rule_reward({"kind": "answer", "pack": fin}, claim) == 0.5
