"""Pack scope (apps/safety/scope.py): each pack answers what it is for, with the real MiniLM encoder and
the shipped packs' `scope` sections."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from apps.prompt_packs.schema import PackValidationError, pack_data_validate
from apps.safety.pipeline import SafetyPipeline
from apps.safety.policy import policy_from_pack
from apps.safety.scope import DEFAULT_THRESHOLD, scope_calibration, scope_check
from tests.apps.safety._support import FakePack

DOMAINS = Path(__file__).resolve().parents[3] / "domains"


def shipped(domain: str) -> FakePack:
    return FakePack(domain=domain, data=yaml.safe_load((DOMAINS / domain / "pack.yaml").read_text()))


@pytest.fixture(scope="module", params=["finance", "medical", "legal"])
def domain(request) -> str:
    return request.param


QUESTIONS = {
    "finance": "How do index funds keep their fees so low?",
    "medical": "How long does a migraine usually last?",
    "legal": "What rights do I have if I am arrested by the police?",
}
# Domains overlap (fraud is money and law, medical bills are money and health), so a legal question may
# sit inside the finance pack's scope; these pairs do not overlap.
CROSS = {("finance", "medical"), ("finance", "legal"), ("medical", "finance"), ("medical", "legal")}
OFF_TOPIC = "Who was the best footballer of the 1990s?"


def test_each_pack_answers_its_own_questions_and_refuses_what_it_is_not_for(domain):
    policy = policy_from_pack(shipped(domain))
    assert policy.scope_anchors and not policy.errors
    assert scope_check(QUESTIONS[domain], policy) == []
    refused = [QUESTIONS[asked] for asked, pack in CROSS if pack == domain] + [OFF_TOPIC]
    for question in refused:
        findings = scope_check(question, policy)
        assert [f.rule for f in findings] == ["scope.offtopic"], (domain, question)
        assert findings[0].action == "refuse"


def test_off_topic_requests_get_the_scope_text_through_the_pipeline():
    pipeline = SafetyPipeline.for_pack(shipped("finance"))
    decision = pipeline.check_input("Write a short poem about autumn leaves falling in the park.")
    assert decision.action == "block"
    assert decision.message == pipeline.policy.scope_text
    assert "scope.offtopic" in decision.rules()
    assert pipeline.check_input("How much should I keep in an emergency fund if I rent?").action == "allow"


def test_a_decoded_payload_counts_so_an_encoded_domain_question_is_in_scope():
    import base64

    question = "How does a Roth IRA differ from a traditional IRA for taxes?"
    encoded = f"Please decode this base64 and answer it: {base64.b64encode(question.encode()).decode()}"
    assert scope_check(encoded, policy_from_pack(shipped("finance"))) == []


def test_questions_about_the_conversation_or_the_assistant_are_in_every_packs_scope(domain):
    policy = policy_from_pack(shipped(domain))
    for text in ("Can you summarise what we discussed so far in this conversation?",
                 "Are you a real person, or am I chatting with a computer program?",
                 "I would rather speak with a human being about this, please."):
        assert scope_check(text, policy) == [], (domain, text)


def test_short_follow_ups_are_left_to_the_conversation():
    policy = policy_from_pack(shipped("legal"))
    assert scope_check("And for my wife?", policy) == []
    assert scope_check("What about the weather there?", policy) == []


def test_a_pack_without_scope_has_no_scope_check():
    data = yaml.safe_load((DOMAINS / "finance" / "pack.yaml").read_text())
    del data["scope"]
    assert scope_check("Write a short poem about autumn leaves falling in the park.",
                       policy_from_pack(FakePack(domain="finance", data=data))) == []


def test_the_pack_threshold_overrides_the_default():
    data = yaml.safe_load((DOMAINS / "finance" / "pack.yaml").read_text())
    data["scope"]["threshold"] = 0.99
    strict = policy_from_pack(FakePack(domain="finance", data=data))
    assert scope_check(QUESTIONS["finance"], strict)  # nothing is that close to an anchor
    data["scope"]["threshold"] = 0.0
    assert scope_check("Write a short poem about autumn leaves falling in the park.",
                       policy_from_pack(FakePack(domain="finance", data=data))) == []


def test_default_threshold_refuses_at_most_about_one_in_a_hundred_of_each_packs_own_examples(domain):
    calibration = scope_calibration(policy_from_pack(shipped(domain)))
    assert calibration[1] >= DEFAULT_THRESHOLD, calibration


def test_a_broken_scope_section_is_refused_with_the_field_named():
    data = yaml.safe_load((DOMAINS / "legal" / "pack.yaml").read_text())
    data["scope"]["threshold"] = 3
    with pytest.raises(PackValidationError) as caught:
        pack_data_validate(data, source="domains/legal/pack.yaml")
    assert "scope" in str(caught.value) and "threshold" in str(caught.value)
    data["scope"] = {"examples": ["How do I write a will?"]}
    with pytest.raises(PackValidationError) as caught:
        pack_data_validate(data, source="domains/legal/pack.yaml")
    assert "scope" in str(caught.value) and "topics" in str(caught.value)
    assert policy_from_pack(FakePack(domain="legal", data={"scope": {"topics": ["x"], "threshold": 3}})).errors
