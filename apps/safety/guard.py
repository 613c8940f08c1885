"""The per-request safety guard and the worker's input-verdict check (issue 6, fail closed).

`apps.safety.middleware.SafetyGuardMiddleware` opens a `RequestGuard` (a context variable) around
every request to a route that makes the model speak. `SafetyPipeline.check_input` marks it:

    guard = guard_current()          # None outside a guarded request (workers, console, evaluation)
    guard.input_checked(decision)    # the input stage ran and produced this decision
    guard.fail(rules, detail)        # a check raised: returns the SafetyCheckError to raise

Inside a guarded request an exception in a check does not become a quiet `block` verdict: it raises
`SafetyCheckError` (an `ApplicationError`, status 503), the turn is not stored and the middleware
answers with a clear error. Outside a guard the input stage keeps its own fail-closed behaviour (the
message is blocked with a `<check>.error` verdict).

The worker side: `input_verdict_problem(input_action=..., verdicts=...)` tells a worker that a stored
turn carries no usable input verdict (missing, not from the input stage, or not matching the action
the turn claims); such a turn must not reach the model. Nothing here imports Django models: the
pipeline imports this module and runs without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from apps.core.errors import ApplicationError, ErrorCode
from apps.safety.verdicts import ALLOW, BLOCK, ESCALATE, REFUSE

INPUT_ACTIONS = (ALLOW, BLOCK, ESCALATE)
CHECK_ERROR_SUFFIX = ".error"


class SafetyCheckError(ApplicationError):
    """A safety check raised during a guarded request: the request is refused (fail closed).

    Rendered by the route's own error renderer (the chat API's JSON error, an OpenAI-style body on
    /v1) with status 503 and code `safety_blocked`; `rules` names the checks that failed.
    """

    def __init__(self, rules: Iterable[str], *, route: str = "") -> None:
        self.rules = sorted(set(rules)) or ["pipeline.error"]
        super().__init__(
            ErrorCode.SAFETY_BLOCKED,
            "The safety check could not be completed, so the request was refused and nothing was sent "
            "to the model. Please try again shortly.",
            data={"reason": "safety_check_error", "rules": self.rules},
            status=503,
        )
        self.route = route


@dataclass
class RequestGuard:
    """What the safety pipeline did during one guarded request.

    `input_checks` counts input-stage decisions (a partner request with history checks several
    messages); `verdicts` keeps their verdicts (rule names and actions only, no text) for the audit
    record of a refused request; `failure` is set once a check raised.
    """

    route: str
    input_checks: int = 0
    actions: list[str] = field(default_factory=list)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    failure: SafetyCheckError | None = None

    def input_checked(self, decision: Any) -> None:
        """Record an input decision; raise SafetyCheckError when one of its checks raised."""
        verdicts = [v.as_dict() for v in decision.verdicts]
        self.verdicts.extend(verdicts)
        errors = [v["rule"] for v in verdicts if _is_check_error(v)]
        if errors:
            raise self.fail(errors)
        self.input_checks += 1
        self.actions.append(decision.action)

    def fail(self, rules: Iterable[str], detail: Mapping[str, Any] | None = None) -> SafetyCheckError:
        """Mark the request as failed closed and return the error to raise (the first one is kept)."""
        if self.failure is None:
            self.failure = SafetyCheckError(rules, route=self.route)
            if detail:
                self.verdicts.append({"stage": "input", "rule": self.failure.rules[0], "action": BLOCK,
                                      "score": 1.0, "latency_ms": 0.0, "detail": dict(detail)})
        return self.failure

    @property
    def input_ran(self) -> bool:
        return self.input_checks > 0


def _is_check_error(verdict: Mapping[str, Any]) -> bool:
    """The verdict the input stage writes when a check raised: `<check>.error` with the exception type."""
    detail = verdict.get("detail") or {}
    return str(verdict.get("rule", "")).endswith(CHECK_ERROR_SUFFIX) and "error" in detail


_current: ContextVar[RequestGuard | None] = ContextVar("verity_safety_guard", default=None)


def guard_current() -> RequestGuard | None:
    """The guard of the request being served, or None outside a guarded request."""
    return _current.get()


@contextmanager
def request_guard(route: str) -> Iterator[RequestGuard]:
    """Open a guard for the duration of one request (nested guards are independent)."""
    guard = RequestGuard(route=route)
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)


def input_verdict_problem(*, input_action: Any, verdicts: Any) -> str | None:
    """Why a stored turn may not be run by a worker, or None when its input verdict is sound.

    A turn is runnable only when its user message carries input-stage verdicts and the action the
    turn claims (`Message.input_action`) is the one those verdicts give: escalate if any escalated,
    else block if any blocked or refused, else allow. A turn stored by a path that skipped the
    pipeline, or whose action was changed afterwards, fails this check.
    """
    if input_action not in INPUT_ACTIONS:
        return f"the turn has no input decision (input_action={input_action!r})"
    if not isinstance(verdicts, list) or not verdicts:
        return "the user message carries no safety verdicts"
    stages = [v for v in verdicts if isinstance(v, Mapping) and v.get("stage") == "input"]
    if not stages:
        return "the user message carries no input-stage verdict"
    acts = {v.get("action") for v in stages}
    expected = ESCALATE if ESCALATE in acts else BLOCK if acts & {BLOCK, REFUSE} else ALLOW
    if expected != input_action:
        return f"the turn claims {input_action!r} but its input verdicts say {expected!r}"
    return None


def input_verdict_require(*, input_action: Any, verdicts: Any) -> None:
    """Raise `ApplicationError(SAFETY_BLOCKED)` for a turn `input_verdict_problem` refuses."""
    problem = input_verdict_problem(input_action=input_action, verdicts=verdicts)
    if problem is not None:
        raise ApplicationError(
            ErrorCode.SAFETY_BLOCKED,
            f"This turn was not run: {problem}. Every turn must pass the safety input stage first.",
            data={"reason": "input_verdict_missing"},
            status=500,
        )
