"""What a prompt pack tells the safety pipeline, read defensively.

The pack (`apps.prompt_packs.models.PackVersion`, duck-typed: `.domain`, `.data`) carries the
disclaimer, refusal and escalation texts and the domain risk rules. Packs are data a compliance team
edits, so every field may be missing or malformed: missing texts fall back to safe defaults, and a
malformed risk rule makes the policy *broken*, which the pipeline turns into "block everything"
(fail closed) rather than silently dropping the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DISCLAIMER = (
    "You are talking to an AI assistant. This is general information, not professional advice; "
    "consult a qualified professional about your situation."
)
DEFAULT_REFUSAL = (
    "I can't help with that request. I can share general, educational information on this topic instead."
)
DEFAULT_CRISIS = (
    "It sounds like you may be going through something very painful, and you deserve support right now. "
    "If you are thinking about suicide or harming yourself, please contact a crisis line: in the US call "
    "or text 988 (Suicide & Crisis Lifeline); in the UK or Ireland call Samaritans on 116 123; elsewhere "
    "find a local line at findahelpline.com. If you are in immediate danger, call your local emergency "
    "number now."
)
DEFAULT_EMERGENCY = (
    "This may be a medical emergency. Call your local emergency number now (911 in the US, 112 in the "
    "EU, 999 in the UK). Do not wait for an online answer."
)

DEFAULT_SCOPE = (
    "I'm Verity, an AI assistant for {topic}. I can't help with that, but I'm happy to answer a "
    "question about {topic}."
)
_TOPICS = {"finance": "financial questions", "medical": "general health information",
           "legal": "general legal information"}

STAGES = ("input", "output")
RULE_ACTIONS = ("block", "escalate", "disclaim", "flag", "redact")


@dataclass(frozen=True)
class RiskRule:
    """A compiled pack rule: regexes or keywords, the stages it applies to and what it does."""

    rule_id: str
    action: str
    stages: tuple[str, ...]
    patterns: tuple[re.Pattern[str], ...]
    message: str | None = None
    escalation: str | None = None  # key into the pack's `escalation` texts (crisis, emergency, fraud...)
    refusal: str | None = None     # key into the pack's `refusal` texts

    def search(self, text: str, pos: int = 0, endpos: int | None = None) -> re.Match[str] | None:
        """The first match in `text[pos:endpos]` (spans index into `text`)."""
        end = len(text) if endpos is None else endpos
        for pattern in self.patterns:
            match = pattern.search(text, pos, end)
            if match:
                return match
        return None


@dataclass
class PackPolicy:
    """The safety-relevant part of one pack version."""

    domain: str
    disclaimer: str
    refusal: str
    crisis_text: str
    emergency_text: str
    rules: list[RiskRule] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refusals: dict[str, str] = field(default_factory=dict)
    escalations: dict[str, str] = field(default_factory=dict)
    # The pack's `scope`: anchor sentences (topics as "a question about ...", the summary, examples) and
    # the similarity below which a message is out of scope; no anchors, no scope check.
    scope_anchors: tuple[str, ...] = ()
    scope_threshold: float | None = None

    @property
    def scope_text(self) -> str:
        """The refusal for out-of-scope messages: the pack's `refusal.scope`, else a default."""
        return self.refusals.get("scope") or DEFAULT_SCOPE.format(
            topic=_TOPICS.get(self.domain, f"{self.domain} questions"))

    def rule_message(self, rule: RiskRule) -> str | None:
        """The text a firing rule shows: its escalation or refusal text from the pack, or its message."""
        if rule.action == "escalate":
            return self.escalations.get(rule.escalation or "crisis") or rule.message or self.crisis_text
        if rule.action == "block":
            return (self.refusals.get(rule.refusal or "") if rule.refusal else None) or rule.message or self.refusal
        return rule.message

    @property
    def broken(self) -> bool:
        return bool(self.errors)


def _text(value: Any, *keys: str) -> str | None:
    """A non-empty string from `value`, or from the first of `keys` present if it is a dict."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict):
        for key in keys:
            found = _text(value.get(key))
            if found:
                return found
    return None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _compile_rule(raw: Any, index: int) -> RiskRule:
    """Compile one rule; raises ValueError naming the rule and the field at fault."""
    if not isinstance(raw, dict):
        raise ValueError(f"risk_rules[{index}] is not a mapping")
    rule_id = str(raw.get("id") or raw.get("name") or f"rule_{index}")
    action = str(raw.get("action", "block")).lower()
    if action not in RULE_ACTIONS:
        raise ValueError(f"risk_rules[{index}] ({rule_id}): unknown action {action!r}")
    stages_raw = raw.get("applies_to", raw.get("stages", raw.get("stage", list(STAGES))))
    stages = tuple(str(s).lower() for s in _as_list(stages_raw))
    if "both" in stages or "all" in stages:
        stages = STAGES
    if not stages or any(s not in STAGES for s in stages):
        raise ValueError(f"risk_rules[{index}] ({rule_id}): applies_to must be input and/or output")
    patterns: list[re.Pattern[str]] = []
    for source in _as_list(raw.get("patterns")) + _as_list(raw.get("pattern")):
        try:
            patterns.append(re.compile(str(source), re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"risk_rules[{index}] ({rule_id}): bad pattern {source!r}: {exc}") from exc
    for word in _as_list(raw.get("keywords")) + _as_list(raw.get("phrases")):
        patterns.append(re.compile(r"\b" + re.escape(str(word)) + r"\b", re.IGNORECASE))
    if not patterns:
        raise ValueError(f"risk_rules[{index}] ({rule_id}): no patterns or keywords")
    message = _text(raw.get("message")) or _text(raw.get("response"))
    escalation = str(raw["escalation"]) if raw.get("escalation") else None
    refusal = str(raw["refusal"]) if isinstance(raw.get("refusal"), str) else None
    return RiskRule(rule_id, action, stages, tuple(patterns), message, escalation, refusal)


def _scope(raw: Any, errors: list[str]) -> tuple[tuple[str, ...], float | None]:
    """The anchor sentences and threshold of a pack's `scope` section (see `apps.safety.scope`)."""
    if raw is None:
        return (), None
    if not isinstance(raw, dict):
        errors.append("scope: expected a mapping with `topics`")
        return (), None
    topics = _as_list(raw.get("topics"))
    if not topics or not all(isinstance(t, str) and t.strip() for t in topics):
        errors.append("scope.topics: expected a non-empty list of texts")
    anchors = [f"a question about {t.strip()}" for t in topics if isinstance(t, str) and t.strip()]
    summary = raw.get("summary")
    if isinstance(summary, str) and summary.strip():
        anchors.append(f"a question about {summary.strip()}")
    anchors += [e.strip() for e in _as_list(raw.get("examples")) if isinstance(e, str) and e.strip()]
    threshold = raw.get("threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not 0 <= threshold <= 1):
        errors.append(f"scope.threshold: expected a number between 0 and 1, got {threshold!r}")
        threshold = None
    return tuple(dict.fromkeys(anchors)), None if threshold is None else float(threshold)


def policy_from_pack(pack: Any) -> PackPolicy:
    """Read a pack (duck-typed) into a `PackPolicy`; never raises, records errors instead."""
    errors: list[str] = []
    try:
        data = getattr(pack, "data", None)
        if data is None and isinstance(pack, dict):
            data = pack
        if not isinstance(data, dict):
            errors.append("pack has no data mapping")
            data = {}
        domain = str(getattr(pack, "domain", None) or data.get("domain") or data.get("slug") or "general")
        disclaimer = _text(getattr(pack, "disclaimer", None), "text") or _text(
            data.get("disclaimer"), "text", "en"
        )
        escalation = data.get("escalation") or data.get("escalations") or {}
        crisis = _text(escalation, "crisis", "self_harm", "suicide", "text") or DEFAULT_CRISIS
        emergency = _text(escalation, "emergency", "medical_emergency") or DEFAULT_EMERGENCY
        refusal = _text(data.get("refusal"), "default", "text", "message") or DEFAULT_REFUSAL
        rules: list[RiskRule] = []
        raw_rules = data.get("risk_rules") or []
        if isinstance(raw_rules, dict):
            # Allow {rule_id: {...}} as well as a list of rules.
            raw_rules = [{"id": key, **(val if isinstance(val, dict) else {})} for key, val in raw_rules.items()]
        for index, raw in enumerate(_as_list(raw_rules)):
            try:
                rules.append(_compile_rule(raw, index))
            except ValueError as exc:
                errors.append(str(exc))
        refusal_raw = data.get("refusal")
        refusals = {str(k): v.strip() for k, v in refusal_raw.items() if isinstance(v, str) and v.strip()} \
            if isinstance(refusal_raw, dict) else {}
        escalations = {str(k): v.strip() for k, v in escalation.items() if isinstance(v, str) and v.strip()} \
            if isinstance(escalation, dict) else {}
        escalations.setdefault("crisis", crisis)
        escalations.setdefault("emergency", emergency)
        anchors, scope_threshold = _scope(data.get("scope"), errors)
        return PackPolicy(
            domain=domain,
            disclaimer=disclaimer or DEFAULT_DISCLAIMER,
            refusal=refusal,
            crisis_text=crisis,
            emergency_text=emergency,
            rules=rules,
            errors=errors,
            refusals=refusals,
            escalations=escalations,
            scope_anchors=anchors,
            scope_threshold=scope_threshold,
        )
    except Exception as exc:  # noqa: BLE001 - a pack we cannot read must block, not crash the turn
        return PackPolicy(
            domain="general",
            disclaimer=DEFAULT_DISCLAIMER,
            refusal=DEFAULT_REFUSAL,
            crisis_text=DEFAULT_CRISIS,
            emergency_text=DEFAULT_EMERGENCY,
            errors=[f"pack unreadable: {type(exc).__name__}"],
        )
