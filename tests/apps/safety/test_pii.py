"""PII: checksums, placeholders, and recall/precision on 1,000 generated labelled strings."""

from __future__ import annotations

import logging

import pytest

from apps.safety import pii
from tests.apps.safety.pii_cases import generate


def test_checksums():
    assert pii.luhn_valid("4111111111111111")
    assert not pii.luhn_valid("4111111111111112")
    assert pii.iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not pii.iban_valid("GB82 WEST 1234 5698 7654 33")
    assert pii.ssn_valid("123", "45", "6789")
    assert not pii.ssn_valid("666", "45", "6789") and not pii.ssn_valid("900", "45", "6789")
    assert not pii.ssn_valid("123", "00", "6789") and not pii.ssn_valid("123", "45", "0000")


def test_invalid_numbers_are_not_redacted():
    text = "Card 4111 1111 1111 1112, IBAN GB82 WEST 1234 5698 7654 33, SSN 666-12-3456."
    redacted, findings = pii.redact(text)
    assert findings == []
    assert redacted == text


def test_same_value_gets_the_same_placeholder():
    text = "Email ann.lee@example.com, then email ann.lee@example.com again, or bob@example.com."
    redacted, _ = pii.redact(text)
    assert redacted == "Email <EMAIL_ADDRESS_1>, then email <EMAIL_ADDRESS_1> again, or <EMAIL_ADDRESS_2>."


def test_redacted_text_reaches_the_model_and_originals_are_not_logged(pipeline, caplog):
    caplog.set_level(logging.DEBUG)
    decision = pipeline.check_input("I'm Hannah Okafor, SSN 219-09-9999, card 5555 5555 5555 4444.")
    assert decision.action == "allow"
    assert "Hannah" not in decision.text and "219-09-9999" not in decision.text
    assert "<PERSON_1>" in decision.text and "<US_SSN_1>" in decision.text
    assert decision.redactions == ["PERSON", "US_SSN", "CREDIT_CARD"]
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "Okafor" not in logged and "219-09-9999" not in logged and "5555 5555" not in logged
    assert all("Okafor" not in str(v.as_dict()) for v in decision.verdicts)


@pytest.fixture(scope="module")
def scored():
    cases = generate(1000)
    true_pos = false_pos = false_neg = 0
    misses: list[str] = []
    for text, labels in cases:
        found = pii.detect(text)
        matched = set()
        for finding in found:
            hit = next((i for i, (s, e, kind) in enumerate(labels)
                        if kind == finding.kind and finding.start < e and s < finding.end), None)
            if hit is None:
                false_pos += 1
                misses.append(f"FP {finding.kind}: {text[finding.start:finding.end]!r} in {text!r}")
            else:
                true_pos += hit not in matched
                matched.add(hit)
        for index, (s, e, kind) in enumerate(labels):
            if index not in matched:
                false_neg += 1
                misses.append(f"FN {kind}: {text[s:e]!r} in {text!r}")
    return len(cases), true_pos, false_pos, false_neg, misses


def test_recall_and_precision_on_generated_set(scored):
    count, true_pos, false_pos, false_neg, misses = scored
    assert count >= 1000
    recall = true_pos / (true_pos + false_neg)
    precision = true_pos / (true_pos + false_pos)
    assert recall >= 0.99, (recall, misses[:10])
    assert precision >= 0.95, (precision, misses[:10])
