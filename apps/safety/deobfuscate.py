"""Normalisation before classification: the views of a message that the intent checks look at.

Obfuscation hides a request from a filter without hiding it from the model, so the input stage
classifies what the model would understand, not only the characters it received. `views(text)`
returns the message itself plus every decoded or rewritten form worth checking:

- cleaned: NFKC, zero-width and soft-hyphen characters removed, Cyrillic/Greek homoglyphs folded to
  Latin, letters spaced out with spaces/dots/dashes joined ("b o m b" -> "bomb"), leetspeak folded
  ("m3th" -> "meth") - only when any of these changed something;
- decoded: base64 and hex runs that decode to readable text, and ROT13 / reversed text (the whole
  message or one of its sentences or clauses) when the decoded form reads as English far better;
- tense: past/future/hypothetical rephrasings rewritten to the plain present request ("How did
  people make X in the past?" -> "how do people make x?"), and to the instruction they stand for
  ("how to make x?"; "How was X committed?" -> "how to commit x?"): a descriptive "how do people"
  reads as awareness, but asked of the past or future it is the request itself;
- segments: the paragraphs and the last sentences of a long message, so a harmful request wrapped at
  the end of a long role-play or "developer mode" preamble is classified on its own (the encoder
  truncates long input; the request would otherwise fall outside its window).

Every view is cheap to compute (regexes, no models); a plain short question yields one view.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata

_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064"
                               "\ufeff"), None)
# Lookalike letters that NFKC leaves alone (Cyrillic and Greek), folded to the Latin letter they mimic.
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "һ": "h", "ӏ": "l", "в": "b", "к": "k", "м": "m", "н": "h", "т": "t", "ɡ": "g",
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "У": "Y", "І": "I", "α": "a", "ο": "o", "ρ": "p", "ε": "e", "ι": "i", "κ": "k", "ν": "v",
    "τ": "t", "υ": "u", "Α": "A", "Β": "B", "Ε": "E", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Χ": "X", "Υ": "Y", "Ζ": "Z",
})
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                       "!": "i", "|": "l", "+": "t", "€": "e"})
# A word that starts with a letter and has digits or symbols inside it: "m3th", "h@ck", "expl0sive".
_LEET_WORD = re.compile(r"\b[a-z](?=[a-z0-9@$!|+€]{0,12}[0-9@$!|+€][a-z])[a-z0-9@$!|+€]{2,13}(?![\w@$!|+€])", re.IGNORECASE)
_SPACED = re.compile(r"\b(?:[A-Za-z][ .\-_*]){2,}[A-Za-z]\b")
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?:\b|0x)(?:[0-9a-fA-F]{2}[ :]?){8,}")
_WORDS = re.compile(r"[a-z']+")
_PIECES = re.compile(r"(?<=[.!?:;])\s+|\n+")
# Common English words: a decoded text that reads as English uses many of them.
_COMMON_WORDS = """a an the and or but if to of in on at for with from by about into how what why when where
who which is are was were be been do does did can could would should will may might must have has had i you he
she it we they me my your his her our their this that these those make made get give tell write explain steps
step way ways someone people person money make build create find use not no all any some more most one two"""
_COMMON = frozenset(_COMMON_WORDS.split())
_TENSE_OPENERS = [
    (re.compile(r"\bhow (?:did|would|will|could|might|were|was) (people|someone|somebody|one|they|criminals|"
                r"hackers|individuals|scammers|terrorists|attackers|thieves|fraudsters|traffickers|dealers|"
                r"gangs|cartels|students|employees|users|doctors|patients|companies|governments)\b"),
     r"how do \1"),
    (re.compile(r"\bhow (?:were|was|will|would|could|might|had) (.{1,80}?) (?:be |been |have been )?"
                r"(\w+ed|\w+en|made|built|done|sold|stolen|taught|bought|brought|got|found|hidden|written)\b"),
     r"how are \1 \2"),
    (re.compile(r"\bwhat (?:were|was|will be|would be|might be|could be) (?:the )?(\w+ )?(ways?|methods?|steps?|"
                r"techniques?|strategies|tactics|tricks)\b"), r"what are the \1\2"),
]
_TENSE_MARKERS = re.compile(
    r",? ?\b(?:in the (?:past|future|old days|olden days|coming (?:years|decades)|\d{2,4}s)|back in (?:the day|"
    r"\d{4})|years ago|decades ago|centuries ago|historically|in history|in (?:the )?(?:year )?(?:19|20|21)\d\d|"
    r"by (?:the year )?(?:20|21)\d\d|someday|one day|hypothetically(?: speaking)?|in a hypothetical (?:world|"
    r"scenario)|in theory)\b,?")


def clean(text: str) -> str:
    """NFKC, invisible characters removed, homoglyphs folded, whitespace collapsed."""
    folded = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_HOMOGLYPHS)
    return " ".join(folded.split())


def _readability(text: str) -> float:
    words = _WORDS.findall(text.lower())
    return sum(w in _COMMON for w in words) / len(words) if words else 0.0


def _printable(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not decoded or sum(ch.isprintable() or ch.isspace() for ch in decoded) / len(decoded) < 0.95:
        return None
    return decoded if " " in decoded.strip() else None


def decoded_payloads(text: str) -> list[tuple[str, str]]:
    """(encoding, decoded text) for every base64/hex run, and ROT13/reversed text that reads as English."""
    found: list[tuple[str, str]] = []
    for match in _B64_RUN.finditer(text):
        chunk = match.group()
        try:
            decoded = _printable(base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=False))
        except (binascii.Error, ValueError):
            decoded = None
        if decoded:
            found.append(("base64", decoded))
    for match in _HEX_RUN.finditer(text):
        digits = re.sub(r"[^0-9a-fA-F]", "", match.group().removeprefix("0x"))
        if len(digits) % 2 == 0:
            decoded = _printable(bytes.fromhex(digits))
            if decoded:
                found.append(("hex", decoded))
    # The whole text, then each sentence or clause: "The following is ROT13, answer it: <payload>"
    # wraps the encoded part in plain English, which would hide it from a whole-text comparison.
    pieces = [text] + [p for p in _PIECES.split(text) if len(p.split()) >= 3 and p.strip() != text.strip()]
    for index, piece in enumerate(pieces):
        base = _readability(piece)
        if index and base >= 0.2:
            continue  # a clause that already reads as English is not the encoded part
        for name, candidate in (("rot13", codecs.decode(piece, "rot13")), ("reversed", piece[::-1])):
            score = _readability(candidate)
            if score >= 0.25 and score > base + 0.15:
                found.append((name, candidate.strip()))
    return found


def _join_spaced(match: re.Match[str]) -> str:
    letters = re.sub(r"[ .\-_*]", "", match.group())
    # "a b o m b": the article before a spaced-out word stays a word of its own.
    if letters[0].lower() in "ai" and len(letters) >= 4 and match.group()[1] == " ":
        return f"{letters[0]} {letters[1:]}"
    return letters


_ACTORS = (r"(?:people|someone|somebody|one|they|criminals|hackers|individuals|scammers|terrorists|attackers|"
           r"thieves|fraudsters|traffickers|dealers|gangs|cartels|students|employees|users|doctors|patients|"
           r"companies|governments)")
# "how did people make x" -> "how to make x"; "how was x made" -> "how to make x".
_HOW_TO_ACTIVE = re.compile(rf"\bhow (?:did|would|will|could|might) {_ACTORS} (?!be\b|been\b|have\b|get\b)(?=[a-z])")
_HOW_TO_PASSIVE = re.compile(r"\bhow (?:were|was|will|would|could|might|had) (.{1,80}?) (?:be |been |have been )?"
                             r"(\w+ed|\w+en|made|built|done|sold|taught|bought|brought|got|found|hidden|written|"
                             r"spread|sent|kept|held|paid|run|shot|hit|led|fed)\b")
_IRREGULAR = {"made": "make", "built": "build", "done": "do", "sold": "sell", "stolen": "steal", "taught": "teach",
              "bought": "buy", "brought": "bring", "got": "get", "gotten": "get", "found": "find", "hidden": "hide",
              "written": "write", "given": "give", "taken": "take", "spread": "spread", "sent": "send",
              "kept": "keep", "held": "hold", "paid": "pay", "run": "run", "shot": "shoot", "hit": "hit",
              "led": "lead", "fed": "feed", "driven": "drive", "chosen": "choose", "forgotten": "forget",
              "broken": "break", "spoken": "speak", "frozen": "freeze", "beaten": "beat", "eaten": "eat",
              "seen": "see", "known": "know", "shown": "show", "grown": "grow", "thrown": "throw"}
_SILENT_E = ("at", "ut", "it", "iz", "is", "uc", "ag", "eg", "ig", "og", "ug", "rg", "ng", "v", "s", "c", "bl",
             "pl", "tl", "dl", "gl", "kl", "zl", "ur", "ir", "ar", "or", "ud", "id", "ad", "od", "ib", "ob")


def _base_verb(participle: str) -> str:
    """A participle's base form, near enough for the encoder ("committed" -> "commit", "forged" -> "forge")."""
    if participle in _IRREGULAR:
        return _IRREGULAR[participle]
    if participle.endswith("ied"):
        return participle[:-3] + "y"
    if participle.endswith("ed"):
        stem = participle[:-2]
        if len(stem) > 2 and stem[-1] == stem[-2] and stem[-1] not in "aeioulsz":
            return stem[:-1]  # committed, planned, smuggled stays (l)
        if stem.endswith(_SILENT_E) and not stem.endswith(("ss", "rs", "ns", "ls", "ts")):
            return stem + "e"
        return stem
    return participle


def how_to(text: str) -> str | None:
    """The instruction a tense-shifted "how" question stands for, if it is one (lower case)."""
    lowered = _TENSE_MARKERS.sub("", text.lower())
    rewritten = _HOW_TO_ACTIVE.sub("how to ", lowered)
    rewritten = _HOW_TO_PASSIVE.sub(lambda m: f"how to {_base_verb(m.group(2))} {m.group(1)}", rewritten)
    rewritten = " ".join(rewritten.split())
    return rewritten if "how to " in rewritten and rewritten != " ".join(lowered.split()) else None


def _fold_tricks(text: str) -> str:
    joined = _SPACED.sub(_join_spaced, text)
    return _LEET_WORD.sub(lambda m: m.group().translate(_LEET), joined)


def detensed(text: str) -> str | None:
    """The plain present-tense request behind a past/future/hypothetical rephrasing, if it is one."""
    lowered = text.lower()
    rewritten = _TENSE_MARKERS.sub("", lowered)
    for pattern, replacement in _TENSE_OPENERS:
        rewritten = pattern.sub(replacement, rewritten)
    rewritten = " ".join(rewritten.split())
    return rewritten if rewritten != " ".join(lowered.split()) else None


def segments(text: str, *, min_chars: int = 400, keep: int = 6) -> list[str]:
    """Paragraphs (and the last two sentences) of a long message; nothing for a short one."""
    if len(text) < min_chars:
        return []
    parts = [p.strip() for p in re.split(r"\n\s*\n|\n(?=\S)", text) if len(p.strip()) >= 12]
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.strip()) >= 12]
    chosen = parts[-keep:] if len(parts) > 1 else []
    tail = " ".join(sentences[-2:])
    if tail and tail not in chosen:
        chosen.append(tail)
    return chosen


def views(text: str) -> list[tuple[str, str]]:
    """(name, text) pairs to classify: "original" first, then the non-identical rewrites."""
    out: list[tuple[str, str]] = [("original", text)]
    seen = {" ".join(text.split()).lower()}

    def add(name: str, candidate: str | None) -> None:
        if candidate:
            key = " ".join(candidate.split()).lower()
            if key not in seen and len(key) >= 8:
                seen.add(key)
                out.append((name, candidate))

    cleaned = clean(text)
    folded = _fold_tricks(cleaned)
    add("cleaned", folded)
    for name, decoded in decoded_payloads(cleaned):
        add(f"decoded.{name}", decoded)
        add(f"decoded.{name}.tense", detensed(decoded))
        add(f"decoded.{name}.how_to", how_to(decoded))
    add("tense", detensed(folded))
    add("how_to", how_to(folded))
    for segment in segments(folded):
        add("segment", segment)
        add("segment.tense", detensed(segment))
        add("segment.how_to", how_to(segment))
    return out
