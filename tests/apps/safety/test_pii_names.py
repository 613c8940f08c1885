"""The person-name recogniser (apps/safety/names.py) through `pii.detect`, and on its own without NER.

Sentences here are written for this file, not drawn from the labelled sets; the names mix ones in the
gazetteer with ones in no common-names list, so that context has to carry some of them.
"""

from __future__ import annotations

import pytest

from apps.safety import names, pii


def _people(text: str) -> list[str]:
    return [text[f.start:f.end] for f in pii.detect(text) if f.kind == "PERSON"]


@pytest.mark.parametrize(("text", "person"), [
    ("Can Amara Hoffmann see my medical records?", "Amara Hoffmann"),
    ("Hi, I'm Temitope Oyebanjo and my pension pot is small.", "Temitope Oyebanjo"),
    ("Please forward the letter to Mr. Okwuosa.", "Okwuosa"),
    ("Is Rangi Tūhoe-Walker's trust still valid?", "Rangi Tūhoe-Walker"),
    ("My late husband, Piotr van der Linde, left no will.", "Piotr van der Linde"),
    ("Siddhartha Raghunathan wants to know if the lease is binding.", "Siddhartha Raghunathan"),
])
def test_names_in_sentences_are_found(text, person):
    assert _people(text) == [person]


@pytest.mark.parametrize("text", [
    "I moved from Kuala Lumpur to Salt Lake City in June.",
    "Does the Fair Credit Reporting Act cover medical debt?",
    "The Supreme Court of Canada heard the appeal in March.",
    "Is Lipitor or Crestor better for my cholesterol?",
    "Ask whether Deutsche Bank charges for SEPA transfers.",
    "What does the Federal Reserve do on Wednesday?",
    "I'm worried, Let's talk about my Roth IRA.",
])
def test_capitalised_words_that_are_not_names_are_left_alone(text):
    assert _people(text) == []


def test_a_name_keeps_its_placeholder_and_the_rest_of_the_sentence():
    redacted, findings = pii.redact("Can Amara Hoffmann see Amara Hoffmann's records at Deutsche Bank?")
    assert redacted == "Can <PERSON_1> see <PERSON_1>'s records at Deutsche Bank?"
    assert [f.kind for f in findings] == ["PERSON", "PERSON"]


def test_without_ner_the_gazetteer_and_context_still_find_names():
    gazetteer = names.Gazetteer(given=["Amara", "Ingrid"], surnames=["Hoffmann", "Lindqvist"])
    text = "My name is Ingrid Lindqvist; can Amara Hoffmann see my file at the Mayo Clinic in May?"
    found = [text[s.start:s.end] for s in names.find_names(text, names=gazetteer)]
    assert found == ["Ingrid Lindqvist", "Amara Hoffmann"]


def test_an_organisation_label_from_ner_weighs_against_an_unknown_pair():
    gazetteer = names.Gazetteer(given=[], surnames=[])
    text = "I have a mortgage with Kuala Lumpur and an account in Bavaria."
    start = text.index("Kuala")
    assert [(s.start, s.end) for s in names.find_names(text, names=gazetteer)] == [(start, start + 12)]
    entities = [names.Entity(start, start + 12, "ORG"), names.Entity(54, 61, "GPE")]
    assert names.find_names(text, entities, names=gazetteer) == []


def test_the_gazetteer_ignores_case_and_accents():
    gazetteer = names.Gazetteer(given=["José"], surnames=["O'Sullivan"])
    assert gazetteer.is_given("JOSE") and gazetteer.is_given("josé")
    assert gazetteer.is_surname("O\u2019Sullivan") and gazetteer.is_surname("Wreford-O'Sullivan")


@pytest.mark.parametrize("text", [
    "Should I move my 401k from Morgan Stanley to Edward Jones?",
    "Is Wells Fargo FDIC insured?",
    "I want to sue Merrill Lynch for bad advice.",
    "Is Raymond James a good broker?",
    "Is Eli Lilly's Mounjaro covered by Medicare?",
    "Can I get a second opinion at MD Anderson?",
    "Does T. Rowe Price charge a fee to close an IRA?",
])
def test_firms_named_after_people_are_organisations(text):
    """Customers name their bank, broker, drug maker or hospital all the time; redacting it as a
    person would leave the model guessing which firm the question is about."""
    assert pii.redact(text)[0] == text


@pytest.mark.parametrize(("text", "person"), [
    ("My name is Raymond James and I need help with my pension.", "Raymond James"),
    ("My adviser Edward Jones called me yesterday.", "Edward Jones"),
    ("Mr Wells Fargo asked about his account.", "Wells Fargo"),
])
def test_a_firms_name_is_still_a_person_when_the_context_says_so(text, person):
    redacted = pii.redact(text)[0]
    assert person not in redacted and "<PERSON" in redacted
