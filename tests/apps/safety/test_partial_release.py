"""Partial release of an unfinished sentence (`apps.safety.partial`): first words leave early, nothing a
check could still match does."""

from __future__ import annotations

import random
import re

import pytest

from apps.safety import pii
from apps.safety.findings import Finding
from apps.safety.output_stage import OutputStage
from apps.safety.partial import _earliest, pii_hold, rules_hold
from apps.safety.policy import PackPolicy
from apps.safety.rules import output_rules_check, sentence_spans
from tests.apps.safety._support import stream


def shown(emissions, kind="answer"):
    return "".join(e.text for e in emissions if e.kind == kind)


def names_check(text: str, policy: PackPolicy) -> list[Finding]:
    """An output PII check that also judges names (Presidio NER, as pii.py does on input), one sentence
    at a time. The product's output check leaves names alone; this one makes a name something a check
    can match, so the tests can see that the stage waits for it."""
    del policy
    found = []
    for start, end in sentence_spans(text):
        for f in pii.detect(text[start:end]):
            found.append(Finding(f.rule, f.action, f.score, f.start + start, f.end + start, f.kind))
    return found


# -- through the stage ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["answer", "reasoning"])
def test_first_words_leave_before_the_sentence_ends(pipeline, kind):
    stage = pipeline.output_stage()
    tokens = ["A", " bond", " is", " a", " loan", " to", " a", " government", " or", " comp"]
    emissions = []
    for token in tokens:
        emissions += stage.feed(kind, token)
    assert shown(emissions, kind) == "A bond is a loan to a government or "
    # The first word leaves with the second token, not at the sentence's end.
    stage = pipeline.output_stage()
    assert stage.feed(kind, "A") == []
    assert shown(stage.feed(kind, " bond"), kind) == "A "


def test_capitalised_first_word_leaves_once_complete_when_no_check_judges_names(pipeline):
    """The pipeline's output PII check ignores names: a capitalised word waits only until it is whole."""
    stage = pipeline.output_stage()
    tokens = ["Comp", "ound", " interest", " is", " a", " type", " of"]
    released_at = []
    for index, token in enumerate(tokens):
        if out := shown(stage.feed("answer", token)):
            released_at.append((index, out))
    assert stage.answer_text == "Compound interest is a type "
    assert released_at[0] == (2, "Compound ")  # "Comp", "ound" could still grow into an email


def test_capitalised_first_word_leaves_once_judged_with_context_when_a_check_judges_names(pipeline):
    stage = OutputStage(policy=pipeline.policy, checks=[("rules", output_rules_check), ("pii", names_check)])
    tokens = ["Comp", "ound", " interest", " is", " a", " type", " of"]
    released_at = []
    for index, token in enumerate(tokens):
        if stage.feed("answer", token):
            released_at.append(index)
    assert stage.answer_text == "Compound interest is a type "
    assert released_at[0] == 4  # after two lower-case words of right-hand context


def test_iban_groups_in_capitals_are_held_even_when_names_are_not_judged(pipeline):
    stage = pipeline.output_stage()
    emissions = []
    for token in ["Pay", " to", " GB", "82", " WEST", " 1234", " 5698", " 7654", " 32", " today", " please"]:
        emissions += stage.feed("answer", token)
        assert "GB82" not in shown(emissions) and "WEST" not in shown(emissions)
    emissions += stage.finish()
    assert "GB82" not in shown(emissions) and "<IBAN" in shown(emissions)


@pytest.mark.parametrize("step", [1, 2, 3, 5])
def test_partial_forbidden_phrase_is_held(pipeline, step):
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", "Honestly, we guarantee ret", step=step)
    assert shown(emissions) == "Honestly, we "
    assert not stage.blocked
    # When the claim completes, the stage blocks: the words before it are retracted, the claim never showed.
    emissions += stream(stage, "answer", "urns of 12% a year. ", step=step)
    assert stage.blocked
    before_retract = []
    for emission in emissions:
        if emission.kind == "retract":
            break
        before_retract.append(emission.text)
    assert "guarantee" not in "".join(before_retract)


def test_partial_phrase_that_turns_harmless_is_released(pipeline):
    stage = pipeline.output_stage()
    text = "Nobody can guarantee the weather in the mountains over the coming weeks, sadly, so "
    emissions = stream(stage, "answer", text[:46], step=4)
    assert shown(emissions) == "Nobody can "  # "guarantee ... returns" could still follow
    emissions += stream(stage, "answer", text[46:], step=4)
    assert shown(emissions) == text  # past the rule's reach: released without waiting for the sentence end


def test_partial_pack_rule_is_held(pipeline):
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", "You should buy shares of AC", step=2)
    assert shown(emissions) == "You should "
    emissions += stream(stage, "answer", "ME now before it rises. ", step=2)
    assert stage.blocked
    assert "buy shares" not in "".join(e.text for e in emissions)


@pytest.mark.parametrize("number, kind", [
    ("4111 1111 1111 1111", "CREDIT_CARD"),
    ("4111-1111-1111-1111", "CREDIT_CARD"),
    ("+44 20 7946 0958", "PHONE_NUMBER"),
    ("(212) 555-0143", "PHONE_NUMBER"),
    ("219-09-9999", "US_SSN"),
    ("jane.roe@example.org", "EMAIL_ADDRESS"),
])
@pytest.mark.parametrize("after", [" today, thanks. ", ". Thanks. ", ""])
def test_pii_typed_character_by_character_is_never_released_unredacted(pipeline, number, kind, after):
    stage = pipeline.output_stage()
    text = f"You can pay with {number}{after}"
    emissions = []
    for index, char in enumerate(text):
        emissions += stage.feed("answer", char)
        out = shown(emissions)
        digits_out = re.sub(r"\D", "", out)
        assert digits_out == "", f"digits released after {text[:index + 1]!r}: {out!r}"
        assert "@" not in out and "jane" not in out
    emissions += stage.finish()
    out = shown(emissions)
    assert f"<{kind}>" in out
    assert number not in out
    assert out.startswith("You can pay with ")


def test_card_digit_by_digit_releases_the_words_before_it(pipeline):
    stage = pipeline.output_stage()
    emissions = stream(stage, "answer", "Your card 4111 1111 1111 11", step=1)
    assert shown(emissions) == "Your card "
    emissions += stream(stage, "answer", "11 is on file ", step=1)
    assert shown(emissions) == "Your card <CREDIT_CARD> is on file "


def test_mid_sentence_name_waits_for_the_sentence_end_when_a_check_judges_names(pipeline):
    """A capitalised word mid-sentence is held until its sentence is judged by a check that looks for names."""
    stage = OutputStage(policy=pipeline.policy, checks=[("rules", output_rules_check), ("pii", names_check)])
    emissions = []
    for token in ["Please", " ask", " Jo", "hn", " Smi", "th", " about", " your", " options"]:
        emissions += stage.feed("answer", token)
        assert "Jo" not in shown(emissions)
    assert shown(emissions) == "Please ask "
    emissions += stage.feed("answer", ". ")
    assert shown(emissions) == "Please ask <PERSON> about your options. "


def test_product_stage_does_not_hold_names_it_never_redacts(pipeline):
    """The pipeline's output PII check leaves names alone (the customer's own are redacted before the
    model ever sees them), so holding capitalised words would only delay the answer."""
    stage = pipeline.output_stage()
    emissions = []
    for token in ["Warren", " Buffett", " favours", " index", " funds", " for", " most"]:
        emissions += stage.feed("answer", token)
    assert shown(emissions) == "Warren Buffett favours index funds for "


@pytest.mark.parametrize("tokens", [
    ["Please", " ask", " Jo", "hn", " Smi", "th", " about", " it", ". ", "Then", " wait", "."],
    ["Jo", "hn", " Smi", "th", " will", " call", " you", " back", " soon", ". ", "Ok", "."],
    ["You", " could", " write", " to", " Ma", "ria", " Gar", "cia", " at", " the", " bank", " today", "."],
])
def test_name_split_over_tokens_is_never_released_before_pii_judged_it(pipeline, tokens):
    """With a check that redacts names, no part of the name ever shows: it waits for the judgement."""
    stage = OutputStage(policy=pipeline.policy, checks=[("rules", output_rules_check), ("pii", names_check)])
    emissions = []
    for token in tokens:
        emissions += stage.feed("answer", token)
        out = shown(emissions)
        for part in ("Jo", "Smi", "Ma", "Gar"):
            assert part not in out, f"{part!r} released before PII judged the name: {out!r}"
    emissions += stage.finish()
    out = shown(emissions)
    assert "<PERSON>" in out
    assert not any(part in out for part in ("John", "Smith", "Maria", "Garcia"))


TEXTS = [
    "Compound interest is interest on interest. Call 212-555-0143 or write to jane.roe@example.org today. "
    "Your card 4111 1111 1111 1111 is on file. Index funds are cheap. ",
    "In 2023, rates rose by 0.5% twice. An IBAN such as GB82 WEST 1234 5698 7654 32 identifies an account. "
    "The SSN 219-09-9999 is an example. ",
    "Bonds pay a coupon. Many advisers say a diversified portfolio helps, but no one can guarantee returns. "
    "Stocks can fall. ",
    "Here is the plan:\n- save first\n- invest second\nDone",
]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("seed", range(6))
def test_streamed_release_equals_judging_the_whole_text(pipeline, text, seed):
    """Whatever the token boundaries, what leaves is exactly what judging the whole text releases:
    nothing left before a check could judge it (or a redaction would be missing here)."""
    whole = pipeline.output_stage()
    expected = shown(whole.feed("answer", text) + whole.finish())
    rng = random.Random(seed)
    stage, emissions, position = pipeline.output_stage(), [], 0
    while position < len(text):
        size = rng.randint(1, 7)
        emissions += stage.feed("answer", text[position: position + size])
        position += size
    assert shown(emissions + stage.finish()) == expected
    assert stage.blocked == whole.blocked


# -- the hold rules -------------------------------------------------------------------------------------

def test_rules_hold_points_at_the_partial_match(pipeline):
    text = "Short answer. Honestly, we guarantee ret"
    start = text.index("Honestly")
    assert rules_hold(text, start, pipeline.policy) == text.index("guarantee")
    assert rules_hold("Honestly, we guarantee nothing about the weather in the coming weeks at all", 0,
                      pipeline.policy) == len("Honestly, we guarantee nothing about the weather in the coming weeks at all")
    # A pack rule, matched on the original case.
    text = "You should buy shares of AC"
    assert rules_hold(text, 0, pipeline.policy) == text.index("buy")


def test_rules_hold_from_a_full_match_that_does_not_block(pipeline):
    """A negated claim is not a violation, but it could still grow: it is held, not released."""
    text = "No fund can guarantee returns, and "
    assert output_rules_check(text, pipeline.policy) == []
    assert rules_hold(text, 0, pipeline.policy) == text.index("guarantee")


def test_earliest_finds_a_partial_match_before_a_full_one():
    """`regex` prefers a full match anywhere to an earlier partial one; the earlier one still counts."""
    assert _earliest(re.compile(r"ab|x.*z"), "x ab", 0) == 0
    assert _earliest(re.compile(r"ab|xyz"), "xy ab", 0) == 3  # "xy" is followed by " ": no longer partial
    assert _earliest(re.compile(r"ab|xyz"), "ab xy", 0) == 0
    assert _earliest(re.compile(r"ab|xyz"), "q ab", 0) == 2
    assert _earliest(re.compile(r"ab|xyz"), "qq", 0) == 2


@pytest.mark.parametrize("text, held_from", [
    ("the answer is simple and ", None),             # nothing held
    ("the answer is simp", "simp"),                   # the word being written
    ("call 212 555", "212"),                          # a number run still open
    ("call 212 555 0143 or ", None),                  # closed by an ordinary word: PII has seen it
    ("call +44 20 ", "+44"),
    ("pay 4111 1111 1111 1111 ext ", "4111"),         # extension markers keep a run open
    ("write to jane@example.org and ", None),          # an email seen whole
    ("ask our adviser Maria about it and ", "Maria"),  # a possible name mid-sentence
    ("Compound interest is ", None),                  # a sentence's first word with two words of context
    ("Compound interest ", "Compound"),               # ... not yet
    ("John Smith said ", "John"),                     # a name of several words
    ("The IBAN GB82 WEST 12 ", "IBAN"),
    ("- Compound interest grows ", None),             # list marker before the first word
])
def test_pii_hold(text, held_from):
    expected = len(text) if held_from is None else text.index(held_from)
    assert pii_hold(text, 0) == expected


def test_pii_hold_first_word_exception_only_at_a_real_sentence_start():
    assert pii_hold("Compound interest is ", 0, opens_sentence=False) == 0
    text = "It grows. Compound interest is "
    assert pii_hold(text, text.index(" Compound")) == len(text)


def test_entity_whose_start_already_left_has_its_pending_part_redacted(pipeline):
    """A recogniser may judge a span longer than the words a hold kept back (here a made-up one that
    takes the words before a number too): what is still pending of it is replaced, never shown."""
    def code_check(text: str, policy: PackPolicy) -> list[Finding]:
        del policy
        return [Finding("pii.code", "redact", 1.0, m.start(), m.end(), "CODE")
                for m in re.finditer(r"secret code \d+", text)]

    stage = OutputStage(policy=pipeline.policy, checks=[("rules", output_rules_check), ("pii", code_check)])
    emissions = stream(stage, "answer", "The secret code 42", step=2)
    assert shown(emissions) == "The secret code "
    emissions += stream(stage, "answer", " opens it. ", step=2)
    assert shown(emissions) == "The secret code <CODE> opens it. "


# -- mid-word release (a source that cannot write "@") --------------------------------------------------

def test_mid_word_stage_paints_a_word_with_its_first_token(pipeline):
    """The chat's engine never writes "@" (SamplingParams.banned_chars), so no email can begin and a
    word's first letters leave with its first token; the default stage waits for the word to end."""
    tokens = ["Comp", "ound", " interest", " is", " interest"]
    mid, default = pipeline.output_stage(mid_word=True), pipeline.output_stage()
    mid_out, default_out = [], []
    for token in tokens:
        mid_out.append(shown(mid.feed("answer", token)))
        default_out.append(shown(default.feed("answer", token)))
    assert mid_out == ["Comp", "ound", " interest", " is", " interest"]
    assert default_out == ["", "", "Compound ", "interest ", "is "]
    assert shown(mid.finish()) == shown(default.finish())[len("interest"):]


@pytest.mark.parametrize("text, released", [
    ("Your card 4111", "Your card "),                    # digits hold from where they appear
    ("Pay to GB", "Pay to "),                             # a possible IBAN's country code
    ("Pay to G", "Pay to "),
    ("Pay to Gr", "Pay to Gr"),                           # not an IBAN: "Gr" cannot open one
    ("Call +44", "Call "),
    ("Call (212", "Call "),
    ("Nobody can guar", "Nobody can "),                   # a rule's partial match ("guarantee ... returns")
    ("Visit our ofﬁce", "Visit our ofﬁce"),              # letters beyond ASCII are letters too
    ("Rates rose by 0.5", "Rates rose by "),
    ("Call 212 555 0143 ext", "Call "),                   # a number run still open
])
def test_mid_word_release_still_holds_what_a_check_could_match(pipeline, text, released):
    stage = pipeline.output_stage(mid_word=True)
    assert shown(stream(stage, "answer", text, step=1)) == released


def test_mid_word_pii_hold_with_names_judged_holds_a_capitalised_start():
    assert pii_hold("Please ask Jo", 0, mid_word=True) == len("Please ask ")
    assert pii_hold("Please ask jo", 0, mid_word=True) == len("Please ask jo")
    assert pii_hold("Please ask Jo", 0, names=False, mid_word=True) == len("Please ask Jo")
    assert pii_hold("Please ask Jo", 0, names=False) == len("Please ask ")


@pytest.mark.parametrize("number, kind", [
    ("4111 1111 1111 1111", "CREDIT_CARD"),
    ("+44 20 7946 0958", "PHONE_NUMBER"),
    ("(212) 555-0143", "PHONE_NUMBER"),
    ("219-09-9999", "US_SSN"),
    ("GB82 WEST 1234 5698 7654 32", "IBAN_CODE"),
])
def test_mid_word_pii_typed_character_by_character_is_never_released_unredacted(pipeline, number, kind):
    stage = pipeline.output_stage(mid_word=True)
    text = f"You can pay with {number} today, thanks. "
    emissions = []
    for index, char in enumerate(text):
        emissions += stage.feed("answer", char)
        out = shown(emissions)
        assert re.sub(r"\D", "", out) == "", f"digits released after {text[:index + 1]!r}: {out!r}"
        assert "GB" not in out and "WEST" not in out
    emissions += stage.finish()
    assert f"<{kind}>" in shown(emissions) and number not in shown(emissions)


MID_WORD_TEXTS = [text.replace(" or write to jane.roe@example.org", "") for text in TEXTS] + [
    "Buyers of bonds get a coupon. Sellers of options collect a premium and carry the risk. ",
    "Nobody can guarantee the weather, but diversified funds guarantee returns of 12% a year. Really. ",
]


@pytest.mark.parametrize("text", MID_WORD_TEXTS)
@pytest.mark.parametrize("seed", range(6))
def test_mid_word_streamed_release_equals_judging_the_whole_text(pipeline, text, seed):
    """Whatever the token boundaries, a mid-word stage releases exactly what judging the whole text
    releases, which is what the default stage releases too: only the timing differs."""
    assert "@" not in text
    whole = pipeline.output_stage()
    whole_emissions = whole.feed("answer", text) + whole.finish()
    expected = shown(whole_emissions)
    rng = random.Random(seed)
    stage, emissions, position = pipeline.output_stage(mid_word=True), [], 0
    while position < len(text):
        size = rng.randint(1, 7)
        emissions += stage.feed("answer", text[position: position + size])
        position += size
    emissions += stage.finish()
    assert stage.blocked == whole.blocked
    if not whole.blocked:
        assert shown(emissions) == expected
    else:  # retracted: the refusal stands, and the claim never left before the retract
        assert stage.answer_text == whole.answer_text
        assert "guarantee returns" not in "".join(e.text for e in emissions)


def test_mid_word_stage_blocks_when_the_banned_character_arrives_anyway(pipeline):
    """Mid-word release relies on the engine never writing "@"; if one arrives, the answer is retracted."""
    stage = pipeline.output_stage(mid_word=True)
    emissions = stream(stage, "answer", "Write to jane", step=2)
    assert shown(emissions) == "Write to jane"
    emissions += stage.feed("answer", ".roe@")
    assert stage.blocked
    assert [e.kind for e in emissions].count("retract") == 1
    assert stage.answer_text == pipeline.policy.refusal
    assert any(v.rule == "retract" for v in stage.verdicts)


def test_a_blocking_match_inside_an_unfinished_word_waits_for_the_word(pipeline):
    """"buy" at the end of the text may still become "buyers": a rule on the word waits for its end."""
    def buy_check(text: str, policy: PackPolicy) -> list[Finding]:
        del policy
        return [Finding("test.buy", "block", 1.0, m.start(), m.end()) for m in re.finditer(r"\bbuy\b", text)]

    for mid_word in (True, False):
        stage = OutputStage(policy=pipeline.policy, checks=[("custom", buy_check)], mid_word=mid_word)
        for token in ["They", " buy", "ers", " wait", ". "]:
            stage.feed("answer", token)
        assert not stage.blocked
        assert stage.answer_text == "They buyers wait. "
        stage = OutputStage(policy=pipeline.policy, checks=[("custom", buy_check)], mid_word=mid_word)
        for token in ["They", " buy", " now", ". "]:
            stage.feed("answer", token)
        assert stage.blocked
        assert "buy" not in stage.answer_text
