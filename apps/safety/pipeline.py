"""`SafetyPipeline`: the one object every turn passes through (docs/CONTRACTS.md, "Safety").

    pipeline = SafetyPipeline.for_pack(pack)
    decision = pipeline.check_input(text)        # allow / block / escalate, redacted text, verdicts
    stage = pipeline.output_stage(canary=token)  # streaming hold-back buffer over the model's output
    for event in engine_stream: publish(stage.feed(event.kind, event.text))
    publish(stage.finish())                      # flush + the pack's disclaimer

Input checks, in order: crisis/emergency (escalate), built-in harm floor and pack risk rules,
prompt-injection/jailbreak signals, the pack's scope (an off-topic message gets the scope refusal),
then PII redaction. The jailbreak classifier and the scope share the MiniLM encoder (`jailbreak=False`
turns both off). Output checks: forbidden claims and unsafe
content, pack output rules, PII, and the system-prompt canary. Any check that raises blocks.
"""

from __future__ import annotations

import functools
from typing import Any

from apps.core.errors import ApplicationError
from apps.safety.crisis import crisis_check
from apps.safety.findings import Finding
from apps.safety.guard import guard_current
from apps.safety.input_stage import Check, run_input_stage
from apps.safety.output_stage import OutputCheck, OutputStage
from apps.safety.partial import pii_hold
from apps.safety.policy import PackPolicy, policy_from_pack
from apps.safety.rules import MAX_OUTPUT_MATCH, input_rules_check, output_rules_check
from apps.safety.verdicts import BLOCK, Emission, InputDecision, Verdict

__all__ = ["SafetyPipeline", "InputDecision", "OutputStage", "Verdict", "Emission"]


def _jailbreak_check(text: str, policy: PackPolicy) -> list[Finding]:
    from apps.safety.jailbreak import jailbreak_check

    return jailbreak_check(text, policy)


def _scope_check(text: str, policy: PackPolicy) -> list[Finding]:
    from apps.safety.scope import scope_check

    return scope_check(text, policy)


def _pii_redact(text: str) -> tuple[str, list[Finding]]:
    from apps.safety.pii import redact

    return redact(text)


def _pii_output_check(text: str, policy: PackPolicy) -> list[Finding]:
    from apps.safety.pii import output_pii_check

    return output_pii_check(text, policy)


# The output PII check leaves names alone (an answer naming Warren Buffett is not a leak), so its partial
# release holds numbers, emails and words still being written, not every capitalised word.
_pii_output_check.partial_hold = functools.partial(pii_hold, names=False)  # type: ignore[attr-defined]


def _canary_check(canary: str) -> OutputCheck:
    """A check that blocks when the system-prompt canary (or its spaced-out form) shows up."""
    squeezed = "".join(canary.split()).lower()

    def check(text: str, policy: PackPolicy) -> list[Finding]:
        lowered = text.lower()
        index = lowered.find(canary.lower())
        if index >= 0:
            return [Finding("canary.leak", BLOCK, start=index, end=index + len(canary))]
        # Models asked to "spell out" the prompt insert spaces or punctuation between characters.
        if squeezed and squeezed in "".join(ch for ch in lowered if ch.isalnum() or ch in "-_"):
            return [Finding("canary.leak", BLOCK)]
        return []

    # The spelled-out form may spread over a few characters per character and across sentence ends,
    # so the output stage holds back this much behind the newest token while a canary is planted.
    check.reach = 8 * len(canary)  # type: ignore[attr-defined]
    return check


class SafetyPipeline:
    """Safety checks for one pack version. Cheap to build; heavy models load once per process."""

    def __init__(self, policy: PackPolicy, *, pii: bool = True, jailbreak: bool = True,
                 holdback: int = 200) -> None:
        self.policy = policy
        self.pii = pii
        self.jailbreak = jailbreak
        if holdback < MAX_OUTPUT_MATCH:
            raise ValueError(f"holdback must be at least {MAX_OUTPUT_MATCH} characters (longest output rule)")
        self.holdback = holdback

    @classmethod
    def for_pack(cls, pack: Any, **options: Any) -> SafetyPipeline:
        """Build the pipeline for a `PackVersion` (duck-typed: `.domain`, `.data`)."""
        try:
            policy = policy_from_pack(pack)
        except Exception as exc:
            guard = guard_current()
            if guard is None:
                raise
            raise guard.fail(["pipeline.error"], {"error": type(exc).__name__}) from exc
        return cls(policy, **options)

    @property
    def disclaimer(self) -> str:
        return self.policy.disclaimer

    def _policy(self, pack: Any | None) -> PackPolicy:
        return self.policy if pack is None else policy_from_pack(pack)

    def input_checks(self) -> list[tuple[str, Check]]:
        checks: list[tuple[str, Check]] = [("crisis", crisis_check), ("rules", input_rules_check)]
        if self.jailbreak:
            checks.append(("jailbreak", _jailbreak_check))
            checks.append(("scope", _scope_check))  # after the classifier: its embeddings are cached
        return checks

    def check_input(self, text: str, *, domain: str | None = None, pack: Any | None = None) -> InputDecision:
        """Run the input stage. Raises `ApplicationError` (MESSAGE_EMPTY, MESSAGE_TOO_LONG,
        INVALID_ENCODING) for text that cannot be a message; otherwise returns a decision.

        Inside a guarded request (`apps.safety.guard`) the decision is recorded on the guard, and a
        check that raised becomes `SafetyCheckError` (503, nothing stored) instead of a block verdict.
        """
        del domain  # the pack already names its domain; accepted for the older call form
        guard = guard_current()
        try:
            policy = self._policy(pack)
            decision = run_input_stage(text, policy, checks=self.input_checks(),
                                       redactor=_pii_redact if self.pii else None)
        except ApplicationError:
            raise  # the message itself is invalid (empty, too long, bad encoding): the caller's 4xx
        except Exception as exc:
            if guard is None:
                raise
            raise guard.fail(["pipeline.error"], {"error": type(exc).__name__}) from exc
        if guard is not None:
            guard.input_checked(decision)
        return decision

    def output_stage(self, domain: str | None = None, pack: Any | None = None, *,
                     canary: str | None = None, mid_word: bool = False) -> OutputStage:
        """A fresh streaming output stage for one reply. `canary` is a secret token the conversation
        layer planted in the system prompt; seeing it in the output means the prompt leaked.
        `mid_word=True` only when the engine was asked never to write `partial.SOURCE_CANNOT_WRITE`
        (`SamplingParams.banned_chars`): a word's first letters may then leave with its first token."""
        del domain
        checks: list[tuple[str, OutputCheck]] = [("rules", output_rules_check)]
        if self.pii:
            checks.append(("pii", _pii_output_check))
        if canary:
            if len(canary) >= self.holdback:
                raise ValueError("canary must be shorter than the hold-back window")
            canary_check = _canary_check(canary)
            canary_check.reach = min(canary_check.reach, self.holdback)  # type: ignore[attr-defined]
            checks.append(("canary", canary_check))
        return OutputStage(policy=self._policy(pack), checks=checks, holdback=self.holdback, mid_word=mid_word)
