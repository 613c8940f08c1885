"""The input stage: limits, then every check on the user's message, before the model sees it.

Order matters only for the result, not for safety: all checks run, each timed into a verdict. An
exception inside a check becomes a `block` verdict named `<check>.error` (fail closed). Escalation
beats blocking: a person in crisis gets the crisis text even if the same message also trips a rule.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

from apps.core.errors import ApplicationError, ErrorCode
from apps.safety.findings import Finding
from apps.safety.policy import PackPolicy
from apps.safety.verdicts import (
    ALLOW,
    BLOCK,
    DISCLAIM,
    ESCALATE,
    REFUSE,
    InputDecision,
    Stopwatch,
    Verdict,
    most_severe,
)

DEFAULT_MAX_MESSAGE_CHARS = 8000

Check = Callable[[str, PackPolicy], list[Finding]]
Redactor = Callable[[str], tuple[str, list[Finding]]]


def max_message_chars() -> int:
    """`settings.VERITY_MAX_MESSAGE_CHARS`, read at call time (settings may load after import)."""
    try:
        from django.conf import settings

        return int(getattr(settings, "VERITY_MAX_MESSAGE_CHARS", DEFAULT_MAX_MESSAGE_CHARS))
    except ImproperlyConfigured:
        return DEFAULT_MAX_MESSAGE_CHARS


def validate_text(text: object) -> str:
    """Size and encoding limits; raises `ApplicationError` the caller can show as-is."""
    if not isinstance(text, str):
        raise ApplicationError(ErrorCode.VALIDATION, "The message must be text.", field="text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApplicationError(
            ErrorCode.INVALID_ENCODING, "The message is not valid UTF-8 text.", field="text"
        ) from exc
    if "\x00" in text:
        raise ApplicationError(ErrorCode.INVALID_ENCODING, "The message contains a NUL character.", field="text")
    if not text.strip():
        raise ApplicationError(ErrorCode.MESSAGE_EMPTY, "The message is empty.", field="text")
    limit = max_message_chars()
    if len(text) > limit:
        raise ApplicationError(
            ErrorCode.MESSAGE_TOO_LONG,
            f"The message is {len(text)} characters long; the limit is {limit}.",
            field="text",
            data={"limit": limit, "length": len(text)},
        )
    return text


def _run(name: str, check: Check, text: str, policy: PackPolicy, verdicts: list[Verdict]) -> list[Finding]:
    clock = Stopwatch()
    try:
        findings = check(text, policy)
    except Exception as exc:  # noqa: BLE001 - fail closed: a broken check blocks the message
        verdicts.append(Verdict("input", f"{name}.error", BLOCK, 1.0, clock.ms(),
                                {"error": type(exc).__name__}))
        return [Finding(f"{name}.error", BLOCK)]
    elapsed = clock.ms()
    if not findings:
        verdicts.append(Verdict("input", name, ALLOW, 0.0, elapsed))
    for finding in findings:
        detail = {"kind": finding.kind} if finding.kind else {}
        verdicts.append(Verdict("input", finding.rule, finding.action, finding.score, elapsed, detail))
    return findings


def run_input_stage(
    text: str,
    policy: PackPolicy,
    *,
    checks: list[tuple[str, Check]],
    redactor: Redactor | None,
) -> InputDecision:
    """Validate `text`, run `checks` and the PII `redactor`, and combine them into a decision."""
    text = validate_text(text)
    verdicts: list[Verdict] = []
    findings: list[Finding] = []
    if policy.broken:
        verdicts.append(Verdict("input", "pack.invalid", BLOCK, 1.0, 0.0, {"errors": len(policy.errors)}))
        findings.append(Finding("pack.invalid", BLOCK))
    for name, check in checks:
        findings += _run(name, check, text, policy, verdicts)

    redacted, redactions = text, []
    if redactor is not None:
        clock = Stopwatch()
        try:
            redacted, pii = redactor(text)
            redactions = [f.kind or f.rule for f in pii]
            verdicts.append(Verdict("input", "pii", "redact" if pii else ALLOW, 1.0 if pii else 0.0,
                                    clock.ms(), {"entities": sorted(set(redactions))} if pii else {}))
        except Exception as exc:  # noqa: BLE001 - unredacted text must never reach the model
            verdicts.append(Verdict("input", "pii.error", BLOCK, 1.0, clock.ms(), {"error": type(exc).__name__}))
            findings.append(Finding("pii.error", BLOCK))
            redacted = ""

    action = most_severe([f.action for f in findings if f.action in (BLOCK, ESCALATE, REFUSE)])
    action = BLOCK if action == REFUSE else action  # callers keep the model out of anything not "allow"
    decision = InputDecision(action=action if action in (BLOCK, ESCALATE) else ALLOW, text=redacted,
                             verdicts=verdicts, redactions=redactions)
    if decision.action == ESCALATE:
        escalations = [f for f in findings if f.action == ESCALATE]
        # Emergency advice comes before anything else (DOMAINS.md, medical).
        escalations.sort(key=lambda f: 0 if f.kind == "emergency" else 1)
        messages = list(dict.fromkeys(f.message or policy.crisis_text for f in escalations))
        decision.message = "\n\n".join(messages)
        decision.escalation_kind = escalations[0].kind or "crisis"
    elif decision.action == BLOCK and not any(f.action == BLOCK for f in findings):
        decision.message = policy.scope_text
    elif decision.action == BLOCK:
        decision.message = next((f.message for f in findings if f.action == BLOCK and f.message), policy.refusal)
    else:
        # Pack "disclaim" rules qualify rather than block: their text goes before the answer.
        notes = [f.message for f in findings if f.action == DISCLAIM and f.message]
        decision.message = "\n\n".join(dict.fromkeys(notes)) or None
    return decision
