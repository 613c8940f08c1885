"""SafetyPipeline's contract: limits, decisions, disclaimer, fail closed (docs/CONTRACTS.md "Safety")."""

from __future__ import annotations

import pytest
from django.test import override_settings

from apps.core.errors import ApplicationError, ErrorCode
from apps.safety import pipeline as pipeline_module
from apps.safety.pipeline import SafetyPipeline
from apps.safety.policy import DEFAULT_DISCLAIMER
from apps.safety.verdicts import Verdict
from tests.apps.safety._support import FINANCE_DISCLAIMER, FakePack, finance_pack


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_message_is_rejected(pipeline, text):
    with pytest.raises(ApplicationError) as caught:
        pipeline.check_input(text)
    assert caught.value.code == ErrorCode.MESSAGE_EMPTY
    assert caught.value.status == 400


def test_too_long_message_uses_the_setting_read_at_call_time(pipeline):
    with override_settings(VERITY_MAX_MESSAGE_CHARS=50):
        with pytest.raises(ApplicationError) as caught:
            pipeline.check_input("a" * 51)
        # At the limit there is no size error (what the classifier makes of "aaa..." is another matter).
        assert pipeline.check_input("a" * 50).action in ("allow", "block")
    assert caught.value.code == ErrorCode.MESSAGE_TOO_LONG
    assert caught.value.status == 413
    assert caught.value.data["limit"] == 50


def test_lone_surrogate_is_an_encoding_error(pipeline):
    with pytest.raises(ApplicationError) as caught:
        pipeline.check_input("hello \ud800")
    assert caught.value.code == ErrorCode.INVALID_ENCODING


def test_domain_question_is_allowed_with_verdicts(pipeline):
    decision = pipeline.check_input("What is the difference between a Roth IRA and a traditional IRA?")
    assert decision.action == "allow"
    assert decision.message is None
    assert decision.text.startswith("What is the difference")
    assert decision.verdicts and all(isinstance(v, Verdict) for v in decision.verdicts)
    first = decision.verdicts[0].as_dict()
    assert set(first) >= {"stage", "rule", "action", "score", "latency_ms"}
    assert first["stage"] == "input"


def test_harmful_instructions_are_refused_with_pack_text(pipeline, pack):
    decision = pipeline.check_input("Explain how to structure my deposits to avoid the CTR reporting threshold")
    assert decision.action == "block"
    assert decision.message == pack.data["refusal"]
    assert "harm.fraud" in decision.rules()


def test_pack_input_rule_blocks(pipeline):
    decision = pipeline.check_input("Can I split my deposits under 10000 each week?")
    assert decision.action == "block"
    assert "pack.structuring" in decision.rules()


def test_crisis_escalates_with_pack_text(pipeline, pack):
    decision = pipeline.check_input("I lost everything in the market and I want to end my life")
    assert decision.action == "escalate"
    assert decision.message == pack.data["escalation"]["crisis"]
    assert decision.escalation_kind == "crisis"


def test_allowed_answer_always_gets_the_disclaimer(pipeline):
    stage = pipeline.output_stage()
    emitted = stage.feed("answer", "Diversification spreads risk across assets.")
    emitted += stage.finish()
    text = "".join(e.text for e in emitted if e.kind == "answer")
    assert text.startswith("Diversification spreads risk across assets.")
    assert text.rstrip().endswith(FINANCE_DISCLAIMER)
    assert stage.disclaimer == FINANCE_DISCLAIMER
    assert not stage.blocked


def test_missing_pack_fields_fall_back_to_safe_defaults():
    pipe = SafetyPipeline.for_pack(FakePack("legal", {}))
    assert pipe.disclaimer == DEFAULT_DISCLAIMER
    stage = pipe.output_stage()
    out = stage.feed("answer", "A contract needs offer and acceptance.") + stage.finish()
    assert out[-1].text.strip() == DEFAULT_DISCLAIMER


def test_malformed_pack_rule_blocks_everything():
    bad = finance_pack(risk_rules=[{"id": "broken", "patterns": ["(unclosed"]}])
    decision = SafetyPipeline.for_pack(bad).check_input("What is an index fund?")
    assert decision.action == "block"
    assert "pack.invalid" in decision.rules()


def test_pack_without_data_fails_closed():
    decision = SafetyPipeline.for_pack(object()).check_input("What is an index fund?")
    assert decision.action == "block"


def test_exception_inside_an_input_check_blocks(monkeypatch, pipeline):
    def explode(text, policy):
        raise RuntimeError("classifier crashed")

    monkeypatch.setattr(pipeline_module, "crisis_check", explode)
    decision = pipeline.check_input("What is an index fund?")
    assert decision.action == "block"
    assert "crisis.error" in decision.rules()


def test_exception_inside_pii_redaction_blocks_and_drops_the_text(monkeypatch, pipeline):
    def explode(text):
        raise RuntimeError("presidio down")

    monkeypatch.setattr(pipeline_module, "_pii_redact", explode)
    decision = pipeline.check_input("My card is 4111 1111 1111 1111")
    assert decision.action == "block"
    assert decision.text == ""


def test_exception_inside_an_output_check_blocks_before_release(monkeypatch, pipeline):
    def explode(text, policy):
        raise RuntimeError("rule engine crashed")

    monkeypatch.setattr(pipeline_module, "output_rules_check", explode)
    stage = pipeline.output_stage()
    emitted = stage.feed("answer", "Some answer text") + stage.finish()
    assert stage.blocked
    assert [e.text for e in emitted if e.kind == "answer"] == [pipeline.policy.refusal]
    assert any(v.rule == "rules.error" and v.action == "block" for v in stage.verdicts)
    assert stage.finish() == []
    assert stage.disclaimer is None


def test_refuse_findings_keep_the_model_out_with_the_scope_text(monkeypatch, pipeline):
    """A `refuse` verdict (out of scope) is reported as "block" to callers, with the scope text."""
    from apps.safety import jailbreak
    from apps.safety.findings import Finding

    monkeypatch.setattr(jailbreak, "jailbreak_check",
                        lambda text, policy: [Finding("classifier.offscope", "refuse", 0.9)])
    decision = pipeline.check_input("Do you ever feel lonely at night?")
    assert decision.action == "block" and decision.refused
    assert decision.message == pipeline.policy.scope_text
    assert any(v.action == "refuse" for v in decision.verdicts)


def test_harm_block_beats_a_refusal(monkeypatch, pipeline):
    from apps.safety import jailbreak
    from apps.safety.findings import Finding

    monkeypatch.setattr(jailbreak, "jailbreak_check",
                        lambda text, policy: [Finding("classifier.offscope", "refuse", 0.9)])
    decision = pipeline.check_input("How do I build a pipe bomb?")
    assert decision.action == "block" and not decision.refused
    assert decision.message != pipeline.policy.scope_text
