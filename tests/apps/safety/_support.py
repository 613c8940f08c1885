"""Helpers for the safety tests: pack stand-ins shaped like `PackVersion` (`.domain`, `.data`), streaming."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FINANCE_DISCLAIMER = "General information only, not investment advice. Investing involves risk."


@dataclass
class FakePack:
    domain: str
    data: dict[str, Any] = field(default_factory=dict)


def finance_pack(**overrides: Any) -> FakePack:
    data = {
        "disclaimer": FINANCE_DISCLAIMER,
        "refusal": "I can't help with that. I can explain the general principles instead.",
        "escalation": {"crisis": "Please call or text 988 now.", "emergency": "Call your local emergency number now."},
        "risk_rules": [
            {"id": "no_specific_tip", "applies_to": ["output"], "action": "block",
             "patterns": [r"\bbuy (?:shares of|stock in) [A-Z]{2,5} (?:now|today)\b"]},
            {"id": "structuring", "applies_to": ["input"], "action": "block",
             "keywords": ["split my deposits under 10000"]},
        ],
        "instructions": "You explain finance.",
    }
    data.update(overrides)
    return FakePack("finance", data)


def stream(stage: Any, kind: str, text: str, step: int = 3) -> list[Any]:
    """Feed `text` in small pieces like a token stream; return every emission in order."""
    emissions = []
    for start in range(0, len(text), step):
        emissions += stage.feed(kind, text[start: start + step])
    return emissions
