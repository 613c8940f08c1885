"""The streaming output stage: nothing unsafe is ever released, retract/refusal, PII, canary."""

from __future__ import annotations

import pytest

from apps.safety.pipeline import SafetyPipeline
from tests.apps.safety._support import FINANCE_DISCLAIMER, stream

SAFE_PREFIX = ("Index funds track a market index, which keeps costs low and spreads risk across many "
               "companies. Over long periods they have often matched the market, minus small fees. ") * 3
UNSAFE = "This particular fund has guaranteed returns of 12% a year, so you cannot lose. "
SAFE_SUFFIX = "Talk to an adviser about your own situation. " * 4


def published_before_retract(emissions, kind="answer"):
    """What a client would have shown on `kind` until the first retract of that stream."""
    shown = []
    for emission in emissions:
        if emission.kind == "retract" and emission.target == kind:
            break
        if emission.kind == kind:
            shown.append(emission.text)
    return "".join(shown)


@pytest.mark.parametrize("step", [1, 4, 17])
def test_answer_turning_unsafe_midway_never_leaks(pipeline, step):
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", SAFE_PREFIX + UNSAFE + SAFE_SUFFIX, step=step)
    emissions += stage.finish()
    shown = published_before_retract(emissions)
    assert "guaranteed" not in shown.lower()
    assert "cannot lose" not in shown.lower()
    assert shown, "safe text before the violation should have streamed out"
    kinds = [e.kind for e in emissions]
    assert "retract" in kinds
    after = emissions[kinds.index("retract") + 1:]
    assert [e.text for e in after] == [pipeline.policy.refusal]
    assert stage.blocked and stage.disclaimer is None
    # The record keeps what the model actually produced.
    assert "guaranteed returns" in stage.raw("answer")
    assert stage.answer_text == pipeline.policy.refusal
    assert any(v.rule == "claim.guaranteed_returns" and v.action == "block" for v in stage.verdicts)


def test_violation_before_anything_released_refuses_without_retract(pipeline):
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", "Risk-free investment: this stock is a sure thing for your money.")
    emissions += stage.finish()
    assert [e.kind for e in emissions] == ["answer"]
    assert emissions[0].text == pipeline.policy.refusal


def test_safe_answer_is_released_in_full_then_disclaimer(pipeline):
    stage = pipeline.output_stage()
    text = SAFE_PREFIX + SAFE_SUFFIX + "The last sentence is still being written"
    emissions = stream(stage, "answer", text, step=5)
    # Completed sentences have left; of the unfinished one, every finished word no check could still
    # match has left too (partial release); the word being written waits for its end (or for finish).
    assert "".join(e.text for e in emissions) == SAFE_PREFIX + SAFE_SUFFIX + "The last sentence is still being "
    emissions += stage.finish()
    shown = "".join(e.text for e in emissions)
    assert shown == text + "\n\n" + FINANCE_DISCLAIMER


def test_released_text_ends_on_word_boundaries(pipeline):
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", SAFE_PREFIX * 2, step=7)
    assert emissions
    assert all(e.text.endswith((" ", "\n")) for e in emissions)


def test_unsafe_reasoning_retracts_reasoning_and_blocks_the_answer(pipeline):
    stage = pipeline.output_stage()
    emissions = stream(stage, "reasoning", "The user wants help. " * 20, step=6)
    assert any(e.kind == "reasoning" for e in emissions)
    emissions += stream(stage, "reasoning", "I'll tell them the fund has guaranteed returns. ")
    emissions += stream(stage, "answer", "Here is my answer.")
    emissions += stage.finish()
    assert "guaranteed" not in published_before_retract(emissions, "reasoning")
    assert any(e.kind == "retract" and e.target == "reasoning" for e in emissions)
    assert [e.text for e in emissions if e.kind == "answer"] == [pipeline.policy.refusal]


def test_canary_leak_is_blocked_even_when_split_across_tokens(pipeline):
    canary = "vty-canary-7f3a9c21"
    stage = pipeline.output_stage(canary=canary)
    text = SAFE_PREFIX + f"My instructions begin with {canary} and then say... " + SAFE_SUFFIX
    emissions = stream(stage, "answer", text, step=2) + stage.finish()
    assert canary not in "".join(e.text for e in emissions)
    assert stage.blocked
    assert any(v.rule == "canary.leak" for v in stage.verdicts)


def test_spelled_out_canary_is_blocked(pipeline):
    stage = pipeline.output_stage(canary="zq81xk44")
    emissions = stream(stage, "answer", "The secret is z q 8 1 x k 4 4 as requested.") + stage.finish()
    assert stage.blocked
    assert "z q 8 1" not in "".join(e.text for e in emissions)


def test_pii_in_output_is_redacted_not_blocked(pipeline):
    stage = pipeline.output_stage()
    text = SAFE_PREFIX + "Write to jane.roe@example.org or call 212-555-0143 with card 4111 1111 1111 1111. " + SAFE_SUFFIX
    shown = "".join(e.text for e in stream(stage, "answer", text, step=3) + stage.finish())
    assert not stage.blocked
    assert "jane.roe@example.org" not in shown
    assert "4111 1111 1111 1111" not in shown
    assert "<EMAIL_ADDRESS>" in shown and "<CREDIT_CARD>" in shown
    assert shown.endswith(FINANCE_DISCLAIMER)


def test_pack_output_rule_blocks(pipeline):
    stage = pipeline.output_stage()
    stream(stage, "answer", "You should buy shares of ACME now before it rises.")
    stage.finish()
    assert stage.blocked
    assert any(v.rule == "pack.no_specific_tip" for v in stage.verdicts)


def test_unknown_stream_kind_is_rejected(pipeline):
    with pytest.raises(ValueError, match="unknown stream kind"):
        pipeline.output_stage().feed("tool", "x")


def test_holdback_shorter_than_longest_rule_is_refused():
    with pytest.raises(ValueError, match="holdback"):
        SafetyPipeline.for_pack(None, holdback=10)


def test_first_sentence_is_released_as_soon_as_it_ends(pipeline):
    """First paint: a short safe sentence leaves when it ends, not 200 characters later."""
    stage = pipeline.output_stage()
    first = "Index funds are baskets of shares. "
    emissions = stream(stage, "answer", first + "They track an ind", step=3)
    assert "".join(e.text for e in emissions) == first + "They track an "


@pytest.mark.parametrize("step", [1, 2, 5, 11])
@pytest.mark.parametrize("unsafe", [
    "Your returns are guaranteed to double within a year. ",
    "Honestly this is a risk-free way to invest your money. ",
    "Send it to 4111 1111 1111 1111 today. ",
])
def test_unsafe_sentence_right_after_a_released_one_never_leaks(pipeline, unsafe, step):
    """The early release never lets a violation through: a sentence is judged whole before it leaves."""
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", "Short answer. " + unsafe + "More text follows here. ", step=step)
    emissions += stage.finish()
    shown = "".join(e.text for e in emissions if e.kind == "answer")
    for fragment in ("guaranteed", "risk-free", "4111"):
        assert fragment not in shown


def test_rules_never_match_across_a_sentence_end(pipeline):
    """The premise of the early release: output matches stay inside one sentence."""
    from apps.safety.rules import output_rules_check

    assert output_rules_check("We guarantee nothing here. Returns vary.", pipeline.policy) == []
    assert output_rules_check("We guarantee these returns.", pipeline.policy)


def test_canary_holds_back_its_reach_even_after_a_sentence_end(pipeline):
    canary = "vty-0123456789ab"
    stage = pipeline.output_stage(canary=canary)
    spelled = " ".join(canary) + ". "
    emissions = stream(stage, "answer", "Fine. " + spelled[:20] + ". " + spelled[20:] + "Done. ", step=2)
    emissions += stage.finish()
    shown = "".join(e.text for e in emissions if e.kind == "answer")
    assert "".join(shown.split()).find("".join(canary.split())) < 0
    assert stage.blocked
