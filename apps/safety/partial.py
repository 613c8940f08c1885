"""Partial release: how much of an *unfinished* sentence the output stage may let out.

Every sentence-bounded output check (the rule floor, pack rules, PII; see `rules.sentence_spans`) judges
a sentence whole once it ends. Before it ends, text may leave up to the earliest position at which any of
those checks could still match once more text arrives. Each function here returns that position for one
check, given the text (`text[start:]` is the unfinished sentence, `start` its first character):

- `rules_hold`: the regex rules, through the `regex` package's partial matching (`partial=True` reports
  a match that could still complete at the end of the string). A full match inside the unfinished
  sentence holds from its start too: a blocking one blocks anyway, and a negated or non-blocking one
  could still grow or hide an earlier partial match.
- `pii_hold`: PII recognised by patterns (cards, IBANs, SSNs, phones, emails) and by NER (names). Text
  is held from the start of any word that could begin such an entity, until the sentence ends or the
  hold proves harmless:

  * the last word, not yet followed by whitespace, is held (any word may still grow into an email or a
    number), except under `mid_word`: for a source that cannot write `@` (`SOURCE_CANNOT_WRITE`; the
    engine masks every token holding it, `SamplingParams.banned_chars`) no email can begin, so the
    word's leading letters may leave before the word ends (`_letters_releasable`). Digits, `+` and other
    punctuation still hold from where they appear, as do a possible IBAN's capitals and, when names
    are judged, a capitalised start;
  * a run of number-like words (with a digit or `+`, bare punctuation such as `(` or `-`, extension
    markers) is held until an ordinary word closes it: numbers never span an ordinary word, so by then
    the PII check has seen the whole run (an IBAN opens with capitals: the next rule holds it);
  * a complete word with `@` has been seen whole by the email pattern (emails hold no whitespace);
  * a capitalised word that is not a common function word (a possible name) is held until the sentence
    ends, with one exception: the *first* word of a sentence, capitalised because it opens the sentence,
    is released once `name_context` further lower-case words of the same sentence have arrived, so the
    name recogniser has judged it with its right-hand context (a finding there is redacted before
    release). A capitalised word after it keeps it held (a name of several words).

Positions are indexes into `text`; `len(text)` means nothing needs holding.
"""

from __future__ import annotations

import re
from functools import lru_cache

import regex

from apps.safety.policy import PackPolicy
from apps.safety.rules import _OUTPUT_RULES

# Right-hand context (complete lower-case words) after which a sentence's capitalised first word counts
# as judged by the name recogniser.
NAME_CONTEXT = 2

# Capitalised only because they open a sentence (or always, "I"); never the start of a name. Words that
# are also common first names (May, Will, Mark, Bill, Grace...) are deliberately absent.
FUNCTION_WORDS = frozenset([
    "a", "an", "the", "i", "i'm", "i've", "i'd", "i'll", "it's", "that's", "there's", "here's", "what's",
    "let's", "how", "what", "when", "where", "why", "who", "whom", "whose", "which", "is", "are", "was",
    "were", "do", "does", "did", "can", "could", "should", "would", "must", "shall", "my", "our", "your",
    "their", "his", "her", "its", "if", "in", "on", "at", "for", "to", "from", "with", "about", "after",
    "before", "during", "since", "until", "as", "by", "of", "into", "onto", "over", "under", "between",
    "among", "through", "also", "and", "but", "or", "nor", "so", "yet", "then", "there", "here", "this",
    "that", "these", "those", "it", "we", "you", "they", "he", "she", "me", "us", "them", "any", "some",
    "all", "every", "each", "both", "either", "neither", "no", "not", "none", "yes", "ok", "okay", "please",
    "thanks", "thank", "hi", "hello", "however", "therefore", "thus", "instead", "still", "even", "just",
    "only", "because", "although", "though", "while", "whereas", "unless", "whether", "once", "first",
    "second", "third", "next", "finally", "overall", "generally", "typically", "usually", "often",
    "sometimes", "many", "most", "more", "much", "few", "several", "other", "another", "such", "be", "been",
    "being", "have", "has", "had", "am", "one",
])

# Mid-word release (`pii_hold(mid_word=True)`) is sound only for a source that cannot write these: with no
# `@`, no email address can begin at a word's letters. The conversation layer asks the engine to mask
# every token holding one (`SamplingParams.banned_chars`); the output stage blocks if one arrives anyway.
SOURCE_CANNOT_WRITE = "@"

_WORD = re.compile(r"\S+")
_PLACEHOLDER = re.compile(r"<[A-Z]+(?:_[A-Z]+)*>")
_EDGE_PUNCT = "\"'“”‘’()[]{}<>,;:.!?*_`-–—•"
_NUMBER_CONNECTORS = frozenset(["+", "-", "(", ")", "/", ".", "#", "x", "ext", "ext.", "extension"])


def _core(word: str) -> str:
    return word.strip(_EDGE_PUNCT)


def _capitalised(word: str) -> bool:
    """A possible name (or IBAN, which opens with capitals): capitalised and not a function word, nor
    the placeholder (`<PERSON>`, `<CREDIT_CARD>`) of an entity the stage already redacted."""
    core = _core(word)
    return (bool(core) and core[0].isupper() and core.lower() not in FUNCTION_WORDS
            and not _PLACEHOLDER.fullmatch(word.strip(_EDGE_PUNCT.replace("<>", ""))))


def _numberish(word: str) -> bool:
    """Could be part of a card, IBAN, SSN or phone number: a digit, `+`, a connector, bare punctuation."""
    return (any(ch.isdigit() for ch in word) or "+" in word or word.lower() in _NUMBER_CONNECTORS
            or not _core(word))


def _plain(word: str) -> bool:
    """An ordinary word: closes a number run and gives a sentence's first word its context."""
    return not _capitalised(word) and not _numberish(word) and "@" not in word


def _letters_releasable(word: str, names: bool) -> int:
    """How many leading characters of an unfinished word may leave under `mid_word`: its run of letters,
    unless the word could still open an IBAN (`[A-Z]{2}` then digits: one or two capitals so far) or,
    when names are judged, a name (a capital). An email cannot begin: the source cannot write `@`."""
    letters = 0
    while letters < len(word) and word[letters].isalpha():
        letters += 1
    if not letters:
        return 0
    head = word[:2]
    if head.isascii() and head.isupper() and head.isalpha():
        return 0  # "G", "GB": an IBAN's country code so far
    if names and word[0].isupper():
        return 0
    return letters


def pii_hold(text: str, start: int, policy: PackPolicy | None = None, *, opens_sentence: bool = True,
             name_context: int = NAME_CONTEXT, names: bool = True, mid_word: bool = False) -> int:
    """Earliest position in `text[start:]` (an unfinished sentence) that must wait for PII to judge it.

    `opens_sentence` says whether `text[start]` really begins a sentence (False when the window was cut
    in the middle of one); only a real first word gets the `name_context` exception. `names=False` is
    for a PII check that does not look for names (the pipeline's output check, `pii.output_pii_check`): a
    capitalised word then holds nothing by itself, except an all-capitals one, which may be part of an
    IBAN ("GB82 WEST 1234 ...") and so continues or opens a number run. `mid_word=True` only for a
    source that cannot write `SOURCE_CANNOT_WRITE`: the unfinished last word's leading letters may leave.
    """
    del policy
    words = [(m.start(), m.group()) for m in _WORD.finditer(text, start)]
    if not words:
        return len(text)
    if words[-1][0] + len(words[-1][1]) == len(text):  # still being written
        complete, hold = words[:-1], words[-1][0]
        if mid_word:
            hold += _letters_releasable(words[-1][1], names)
    else:
        complete, hold = words, len(text)
    # The sentence's first word proper (after list markers, dashes, quotes on their own).
    first = next((i for i, (_, w) in enumerate(complete) if _core(w)), -1) if opens_sentence else -1
    run_start: int | None = None  # start of an open run of number-like words
    for index, (position, word) in enumerate(complete):
        if not names and _capitalised(word):
            core = _core(word)
            if core.isupper() and core.isalnum():  # a possible IBAN group
                if run_start is None:
                    run_start = position
            else:
                run_start = None
            continue
        if _capitalised(word):
            if index == first and _core(word).replace("'", "").replace("-", "").isalpha():
                context = complete[index + 1: index + 1 + name_context]
                if len(context) == name_context and all(_plain(w) for _, w in context):
                    run_start = None
                    continue
            # A possible name: judged only with its whole sentence.
            return min(hold, position if run_start is None else run_start)
        if _numberish(word):
            if run_start is None:
                run_start = position
        else:  # an ordinary word, or an email seen whole: the run before it is complete
            run_start = None
    return hold if run_start is None else min(hold, run_start)


# -- regex rules --------------------------------------------------------------------------------------

_FLAG_NAMES = ("IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE", "ASCII")


@lru_cache(maxsize=2048)
def _partial_pattern(source: str, flags: int) -> regex.Pattern[str]:
    """The `regex` twin of a compiled `re` pattern (same source, same flags)."""
    converted = regex.VERSION0
    for name in _FLAG_NAMES:
        if flags & getattr(re, name):
            converted |= getattr(regex, name)
    return regex.compile(source, converted)


def _earliest(pattern: re.Pattern[str], text: str, start: int) -> int:
    """Earliest position >= `start` where `pattern` matches or could still match as `text` grows."""
    twin = _partial_pattern(pattern.pattern, pattern.flags)
    found = twin.search(text, start, partial=True)
    if found is None:
        return len(text)
    if found.partial:
        return found.start()
    # `regex` prefers a full match anywhere over an earlier partial one: look for a partial match
    # anchored at each position before the full match.
    for position in range(start, found.start()):
        if twin.match(text, position, partial=True) is not None:
            return position
    return found.start()


def rules_hold(text: str, start: int, policy: PackPolicy, *, opens_sentence: bool = True,
               mid_word: bool = False) -> int:
    """Earliest position in `text[start:]` (an unfinished sentence) where an output rule could still match.

    Mirrors `rules.output_rules_check`: the floor is matched on the lower-cased text, pack output rules on
    the text itself. Holding from a match that may never complete only delays text, never leaks it.
    Partial matching is exact inside a word too, so `mid_word` changes nothing here.
    """
    del opens_sentence, mid_word
    lowered = text.lower()
    if len(lowered) != len(text):  # case folding changed lengths: positions would not line up
        return start
    hold = len(text)
    for _, _, pattern in _OUTPUT_RULES:
        hold = min(hold, _earliest(pattern, lowered, start))
    for rule in policy.rules:
        if "output" in rule.stages:
            for pattern in rule.patterns:
                hold = min(hold, _earliest(pattern, text, start))
    return hold
