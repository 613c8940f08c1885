"""The common currency of the checks: a `Finding` says which rule fired, what to do, and where.

Checks are plain functions `(text, policy) -> list[Finding]`; the input and output stages time them,
turn findings into verdicts and fail closed when a check raises.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    """One rule firing on a text. `start`/`end` locate it (the output stage holds text back by them)."""

    rule: str
    action: str
    score: float = 1.0
    start: int = 0
    end: int = 0
    kind: str | None = None  # e.g. "crisis" / "emergency" for escalations, entity type for PII
    message: str | None = None


_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, NFKC (folds full-width and styled letters), straight quotes, single spaces.

    Keeps length-independent semantics only; spans from a normalised text are not used to cut the
    original, so the collapsing of whitespace is safe here.
    """
    folded = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return _SPACES.sub(" ", folded).strip()
