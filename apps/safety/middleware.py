"""`SafetyGuardMiddleware`: every request that makes the model speak passes the safety pipeline (issue 6).

The guarded routes are the ones that submit a turn: the chat's `POST .../messages` and
`POST .../regenerate` and the partner API's `POST /v1/chat/completions` (`GUARDED_ROUTES`, by URL
name; `settings.VERITY_SAFETY_GUARDED_ROUTES` may add more). The read-only stream endpoints (SSE of a
reply or a conversation) are not guarded: they relay what the worker already passed through the
output stage, and the guard applies to submission.

For a guarded request the middleware opens a `RequestGuard` (apps/safety/guard.py) that
`SafetyPipeline.check_input` marks, and fails closed:

- a safety check that raises refuses the request: 503 with code `safety_blocked`, in the route's
  style (the chat API's `{"error": {...}}`, an OpenAI-style body on /v1), nothing stored;
- a success response from a route that needs a fresh input check but never ran one ("the view forgot
  the pipeline") is replaced by a 500 error; on the chat routes the request's database work runs in
  one transaction that is then rolled back, so nothing is stored and nothing is enqueued;
- both are logged and audited (`turn.failed`, verdicts and rule names only, no text).

The audit record of a turn itself is appended by the worker when the reply ends (`turn.completed` /
`turn.failed`), and the worker refuses a turn whose input verdict is missing
(`apps.safety.guard.input_verdict_require`, called by `apps.conversations.services.reply_generate`):
regenerate reuses the stored verdict of the question, and a /v1 idempotent replay (`Idempotent-Replayed:
true`) returns an earlier turn, so neither runs the input stage again in the request.

This layer sits below conversations and partner_api and imports neither: the OpenAI-style error body is
built here in the same shape as `apps.partner_api.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from django.utils.html import escape

from apps.core.errors import ApplicationError, ErrorCode
from apps.core.http import error_response
from apps.safety.guard import RequestGuard, SafetyCheckError, request_guard
from apps.safety.verdicts import BLOCK

logger = logging.getLogger(__name__)

CHAT, OPENAI, HTML = "chat", "openai", "html"
REPLAYED_HEADER = "Idempotent-Replayed"
RETRY_AFTER_S = 5


@dataclass(frozen=True)
class GuardedRoute:
    """A route that makes the model speak.

    `fresh_input`: a success needs an input-stage decision made in this request (False for regenerate,
    which answers an already-checked question again; the worker checks its stored verdict).
    `atomic`: run the view in one transaction, rolled back when the guard fails (not for routes that
    wait in the request for the worker, such as a non-streaming /v1 completion).
    `style`: how errors look on this route (`chat`, `openai` or `html`).
    """

    name: str
    fresh_input: bool = True
    atomic: bool = True
    style: str = CHAT
    methods: tuple[str, ...] = ("POST",)


GUARDED_ROUTES: tuple[GuardedRoute, ...] = (
    GuardedRoute("conversations:messages"),
    GuardedRoute("conversations:regenerate", fresh_input=False),
    GuardedRoute("partner_api:chat-completions", atomic=False, style=OPENAI),
)


def guarded_routes() -> dict[str, GuardedRoute]:
    """The guarded routes by URL name: the built-in ones plus `settings.VERITY_SAFETY_GUARDED_ROUTES`
    (each a `GuardedRoute` or its keyword arguments as a dict)."""
    routes = {route.name: route for route in GUARDED_ROUTES}
    for extra in getattr(settings, "VERITY_SAFETY_GUARDED_ROUTES", ()):
        route = extra if isinstance(extra, GuardedRoute) else GuardedRoute(**extra)
        routes[route.name] = route
    return routes


def url_patterns(resolver: URLResolver | None = None, prefix: str = "") -> dict[str, str]:
    """Every `namespace:name` of the URLconf (what `ResolverMatch.view_name` reports) -> its own pattern."""
    resolver = resolver if resolver is not None else get_resolver()
    patterns: dict[str, str] = {}
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            patterns.update(url_patterns(pattern, f"{prefix}{pattern.namespace}:" if pattern.namespace else prefix))
        elif isinstance(pattern, URLPattern) and pattern.name:
            patterns.setdefault(prefix + pattern.name, str(pattern.pattern))
    return patterns


def guarded_routes_check(routes: dict[str, GuardedRoute]) -> frozenset[str] | None:
    """Refuse to start when a guarded route's name is gone from a mounted URL namespace: a renamed
    route would otherwise lose its guard silently. A front door that is not mounted has nothing to guard.

    Returns the last path segments of the guarded routes (`messages`, `regenerate`, `completions`), so
    that other requests skip URL resolution; None when one of them is not a plain word (resolve all)."""
    patterns = url_patterns()
    namespaces = {name.rpartition(":")[0] for name in patterns}
    missing = [name for name in routes if name not in patterns and name.rpartition(":")[0] in namespaces]
    if missing:
        raise ImproperlyConfigured(f"Safety-guarded routes not found in the URLconf: {', '.join(sorted(missing))}; "
                                   "update apps.safety.middleware.GUARDED_ROUTES when renaming a route.")
    tails = {patterns[name].rstrip("/$").rpartition("/")[2] for name in routes if name in patterns}
    return frozenset(tails) if all(tail.replace("-", "").replace("_", "").isalnum() for tail in tails) else None


class SafetyGuardMiddleware:
    """Fail-closed guard around every request to a route that makes the model speak."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.routes = guarded_routes()
        self.methods = {method for route in self.routes.values() for method in route.methods}
        self.tails = guarded_routes_check(self.routes)

    def route_for(self, request: HttpRequest) -> GuardedRoute | None:
        if request.method not in self.methods:
            return None
        if self.tails is not None and request.path_info.rstrip("/").rpartition("/")[2] not in self.tails:
            return None  # cheap pre-filter: no guarded route ends like this path
        try:
            match = resolve(request.path_info, getattr(request, "urlconf", None))
        except Resolver404:
            return None
        route = self.routes.get(match.view_name)
        return route if route is not None and request.method in route.methods else None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = self.route_for(request)
        if route is None:
            return self.get_response(request)
        with request_guard(route.name) as guard:
            if route.atomic:
                with transaction.atomic():
                    response = self.get_response(request)
                    problem = guard_problem(route, guard, response)
                    if problem is not None:
                        transaction.set_rollback(True)  # nothing of the refused turn is stored or enqueued
            else:
                response = self.get_response(request)
                problem = guard_problem(route, guard, response)
        if problem is None:
            return response
        return refuse(request, route, guard, response, problem)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # A SafetyCheckError escaping a guarded view (the /v1 views render their own) leaves in the
        # route's style, never as a bare 500; __call__ then logs and audits the refusal.
        if isinstance(exception, SafetyCheckError):
            route = self.route_for(request)
            return error_for(route, exception) if route is not None else None
        return None


def guard_problem(route: GuardedRoute, guard: RequestGuard, response: HttpResponse) -> str | None:
    """Why this response may not leave as it is, or None."""
    if guard.failure is not None:
        return "safety_check_error"
    if not 200 <= response.status_code < 300:
        return None  # an error response carries nothing from the model
    if route.fresh_input and not guard.input_ran and response.get(REPLAYED_HEADER) != "true":
        return "pipeline_skipped"
    return None


def refuse(request: HttpRequest, route: GuardedRoute, guard: RequestGuard, response: HttpResponse,
           problem: str) -> HttpResponse:
    """Replace `response` with the fail-closed error; log and audit the refusal."""
    if problem == "safety_check_error" and guard.failure is not None:
        error: ApplicationError = guard.failure
        logger.warning("safety check failed on %s %s (rules %s): request refused", request.method,
                       route.name, ",".join(guard.failure.rules))
    else:
        error = ApplicationError(
            ErrorCode.SAFETY_BLOCKED,
            "The request was refused: it did not pass the safety pipeline, so nothing was sent to the "
            "model. This is a server error; it has been recorded.",
            data={"reason": "pipeline_skipped"}, status=500)
        logger.error("guarded route %s returned %s without running the safety input stage: response "
                     "replaced, request refused", route.name, response.status_code)
    guard_refusal_audit(request=request, route=route, guard=guard, reason=problem)
    if problem == "safety_check_error" and response.status_code == error.status \
            and response.get("Content-Type", "").startswith("application/json"):
        # The route's own renderer (chat JSON, /v1 OpenAI body) already showed this error in its style.
        return _no_store(response, error)
    # The replaced response is dropped unsent. Not closed: `close()` would fire `request_finished` (and
    # close the database connection) in the middle of this request; a stream's generator never started.
    return error_for(route, error)


def error_for(route: GuardedRoute, error: ApplicationError) -> HttpResponse:
    """The error in the route's style."""
    if route.style == OPENAI:
        # Same shape as apps.partner_api.errors (a layer above this one): SDKs switch on the status.
        body = {"error": {"message": error.message, "type": "server_error", "code": error.code.value,
                          "param": None}}
        response: HttpResponse = JsonResponse(body, status=error.status)
    elif route.style == HTML:
        response = HttpResponse(
            f"<!doctype html><title>Request refused</title><h1>Request refused</h1><p>{escape(error.message)}</p>",
            status=error.status, content_type="text/html; charset=utf-8")
    else:
        response = error_response(error)
    return _no_store(response, error)


def _no_store(response: HttpResponse, error: ApplicationError) -> HttpResponse:
    if error.status == 503:
        response["Retry-After"] = str(RETRY_AFTER_S)
    response["Cache-Control"] = "no-store"
    return response


def guard_refusal_audit(*, request: HttpRequest, route: GuardedRoute, guard: RequestGuard, reason: str) -> None:
    """Append `turn.failed` for a refused request: who, which route, why, the verdicts (no text).

    Appended outside the rolled-back transaction. An audit failure is logged and does not turn the
    refusal into a success: the request stays refused either way."""
    from apps.audit.services import audit_append

    actor, tenant = _actor(request)
    rules = guard.failure.rules if guard.failure is not None else []
    # The guard's own decision is a verdict like any other, so the record says why without its payload.
    refusal = {"stage": "guard", "rule": f"guard.{reason}", "action": BLOCK, "score": 1.0, "latency_ms": 0.0,
               "detail": {"route": route.name, "input_checks": guard.input_checks}}
    try:
        audit_append(event="turn.failed", actor=actor, tenant=tenant, subject=f"route:{route.name}",
                     payload={"reason": reason, "route": route.name, "method": request.method,
                              "rules": rules, "input_checks": guard.input_checks},
                     verdicts=[*guard.verdicts, refusal], data_subject="")
    except Exception:
        logger.exception("could not audit the refusal of %s", route.name)


def _actor(request: HttpRequest) -> tuple[Any, Any]:
    """(actor, tenant) of the request: the signed-in user or the partner's API key (set by DRF)."""
    api_key = getattr(request, "auth", None)
    if api_key is not None and hasattr(api_key, "prefix"):
        return f"apikey:{api_key.prefix}", getattr(api_key, "tenant", None)
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False):
        return user, getattr(user, "default_tenant", None)
    return "anonymous", None
