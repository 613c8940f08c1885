"""Value types the safety pipeline hands to its callers: verdicts, emissions, input decisions.

Every check produces a `Verdict(stage, rule, action, score, latency_ms)`; the conversation core
stores `verdict.as_dict()` with the message and in the audit record. Nothing here holds personal
content: verdicts name rules and entity types, never the matched text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

# Actions, from least to most severe. `redact` and `disclaim` still let the text through.
ALLOW = "allow"
REDACT = "redact"
DISCLAIM = "disclaim"
FLAG = "flag"
REFUSE = "refuse"  # declined with a template (out of scope): no model call, like block, but not harm
BLOCK = "block"
ESCALATE = "escalate"
RETRACT = "retract"

# A decision's overall action is the most severe one among its verdicts.
SEVERITY = {ALLOW: 0, REDACT: 1, DISCLAIM: 1, FLAG: 2, REFUSE: 3, RETRACT: 3, BLOCK: 4, ESCALATE: 5}


@dataclass(frozen=True)
class Verdict:
    """One decision of one check: where (`stage`), which rule, what it did, how sure, how long."""

    stage: str
    rule: str
    action: str
    score: float = 1.0
    latency_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"] = round(float(self.score), 4)
        data["latency_ms"] = round(float(self.latency_ms), 3)
        if not self.detail:
            data.pop("detail")
        return data


@dataclass(frozen=True)
class Emission:
    """A piece of the reply the caller may publish now.

    `kind` is "reasoning" or "answer" (publish as `<kind>.delta`), or "retract": withdraw everything
    already published on the stream named by `target` ("answer" or "reasoning").
    """

    kind: str
    text: str = ""
    target: str | None = None


@dataclass
class InputDecision:
    """Outcome of the input stage.

    `action` is "allow", "block" or "escalate". A refusal (verdict action "refuse": the message is out
    of the pack's scope) is reported as "block" with the scope text, so that every caller that keys
    on "block" keeps the model out of it; `refused` tells the two apart. `text` is what may go to the model (PII replaced by
    placeholders such as <PERSON_1>); `message` is the text to show the user instead of (block) or
    before (escalate) an answer; `redactions` lists the entity types replaced, in order.
    """

    action: str
    text: str
    message: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    redactions: list[str] = field(default_factory=list)
    escalation_kind: str | None = None

    @property
    def allowed(self) -> bool:
        return self.action == ALLOW

    @property
    def refused(self) -> bool:
        """Blocked only by a refusal (scope), not by a harm rule."""
        acts = {v.action for v in self.verdicts}
        return self.action == BLOCK and REFUSE in acts and BLOCK not in acts

    def rules(self) -> list[str]:
        """Names of the rules that did something other than allow."""
        return [v.rule for v in self.verdicts if v.action != ALLOW]


def most_severe(actions: list[str]) -> str:
    """The most severe action in `actions` (ALLOW for an empty list)."""
    return max(actions, key=lambda a: SEVERITY.get(a, SEVERITY[BLOCK]), default=ALLOW)


class Stopwatch:
    """Milliseconds since creation, for the `latency_ms` of a verdict."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self._start) * 1000.0


@contextmanager
def timed() -> Iterator[Stopwatch]:
    yield Stopwatch()
