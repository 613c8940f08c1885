"""The safety guard middleware and the worker's input-verdict check (issue 6: fail closed).

Real PostgreSQL, Redis Streams and the real safety pipeline; the requests go through the whole Django
middleware stack with the Django test client. The stand-in engine (`fake_engine`) replaces model_core
because the subject here is that the model is never reached, which its recorded prompts show. A check
"raises" by replacing one of the pipeline's check functions with one that raises; a view that "forgets
the pipeline" is the real view with its `turn_submit` replaced by a copy that skips the input stage.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

if "apps.conversations" not in settings.INSTALLED_APPS:  # `--ds tests.apps.safety._settings` runs no DB
    pytest.skip("the middleware tests need the whole project", allow_module_level=True)

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import Client, RequestFactory
from django.utils import timezone

from apps.audit.models import AuditRecord
from apps.audit.services import audit_verify
from apps.conversations.models import Conversation, Message, Outbox, Role, Status
from apps.conversations.services import TurnSubmitted, conversation_create, reply_generate, turn_submit
from apps.conversations.streams import stream_bus
from apps.safety import pipeline as pipeline_module
from apps.safety.guard import guard_current, input_verdict_problem, request_guard
from apps.safety.middleware import GuardedRoute, SafetyGuardMiddleware, guarded_routes, guarded_routes_check
from apps.safety.pipeline import SafetyPipeline

pytestmark = pytest.mark.django_db

QUESTION = "What is compound interest?"
# The pipeline's check functions, each replaced in turn by one that raises.
CHECKS = {"crisis_check": "crisis.error", "_jailbreak_check": "jailbreak.error", "_pii_redact": "pii.error"}


def _raising(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("check backend down")


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replies handed to the worker (the dispatcher is recorded instead of reaching Celery)."""
    handed: list[str] = []
    monkeypatch.setattr("apps.conversations.dispatch.reply_enqueue", handed.append)
    return handed


@pytest.fixture
def browser(customer: Any, packs: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    client.get("/chat/")
    client.csrf = client.cookies["csrftoken"].value
    return client


def _post(client: Client, url: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return client.post(url, data=json.dumps(body or {}), content_type="application/json",
                       HTTP_X_CSRFTOKEN=getattr(client, "csrf", ""), **headers)


@pytest.fixture
def conversation_id(browser: Client) -> str:
    return _post(browser, "/chat/api/conversations", {"domain": "finance"}).json()["id"]


@pytest.fixture
def partner_key(packs: Any) -> tuple[str, Any]:
    from apps.accounts.services import demo_tenant_get
    from apps.apikeys.services import api_key_create

    issued = api_key_create(tenant=demo_tenant_get(), name="guard-test", requests_per_minute=10_000,
                            tokens_per_minute=10_000_000)
    return issued.plaintext, issued.api_key


def _refusals() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(event="turn.failed", subject__startswith="route:").order_by("seq"))


def _turn_submit_without_pipeline(*, conversation: Conversation, text: Any,
                                  sampling: dict[str, Any] | None = None) -> TurnSubmitted:
    """A regression the guard must catch: the turn stored and enqueued with no input stage."""
    from apps.conversations.dispatch import reply_enqueue

    pack = conversation.pack_version
    with transaction.atomic():
        user_message = Message.objects.create(conversation=conversation, role=Role.USER, status=Status.COMPLETE,
                                              content=text, pack_version=pack)
        reply = Message.objects.create(conversation=conversation, role=Role.ASSISTANT, status=Status.PENDING,
                                       reply_to=user_message, pack_version=pack, sampling=sampling or {})
        Outbox.objects.create(reply=reply, enqueued_at=timezone.now())
        reply_id = str(reply.id)
        transaction.on_commit(lambda: reply_enqueue(reply_id))
    return TurnSubmitted(user_message=user_message, reply=reply)


# -- a check that raises blocks the request ---------------------------------------------------------


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_a_raising_check_refuses_a_chat_turn_with_503_and_the_model_is_never_called(
        browser, conversation_id, fake_engine, enqueued, monkeypatch, django_capture_on_commit_callbacks, check):
    monkeypatch.setattr(pipeline_module, check, _raising)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(browser, f"/chat/api/conversations/{conversation_id}/messages", {"text": QUESTION})
    assert response.status_code == 503 and response["Retry-After"]
    error = response.json()["error"]
    assert error["code"] == "safety_blocked" and "nothing was sent to the model" in error["message"]
    assert error["data"] == {"reason": "safety_check_error", "rules": [CHECKS[check]]}
    assert Message.objects.count() == 0 and Outbox.objects.count() == 0
    assert callbacks == [] and enqueued == [] and fake_engine.prompts == []
    [record] = _refusals()
    assert record.subject == "route:conversations:messages" and record.actor == "user:alice"
    rules = {v["rule"]: v["action"] for v in record.verdicts}
    assert rules[CHECKS[check]] == "block" and rules["guard.safety_check_error"] == "block"
    assert QUESTION not in json.dumps(record.verdicts) and not record.payload_sealed  # no text kept
    assert audit_verify().ok

    monkeypatch.undo()  # the same route works again once the check does
    monkeypatch.setattr("apps.conversations.dispatch.reply_enqueue", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        ok = _post(browser, f"/chat/api/conversations/{conversation_id}/messages", {"text": QUESTION})
    assert ok.status_code == 202 and enqueued == [ok.json()["reply_id"]]


def test_a_raising_check_refuses_a_partner_completion_with_an_openai_style_503(
        partner_key, fake_engine, enqueued, monkeypatch, django_capture_on_commit_callbacks):
    key, api_key = partner_key
    monkeypatch.setattr(pipeline_module, "_jailbreak_check", _raising)
    body = {"model": "finance", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content":
            "Hello."}, {"role": "user", "content": QUESTION}]}
    conversations = Conversation.objects.count()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = Client().post("/v1/chat/completions", data=json.dumps(body), content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 503 and response["Retry-After"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == "server_error" and error["code"] == "safety_blocked" and error["param"] is None
    # The history's first user message failed its check: no conversation, no turn, no model call.
    assert Conversation.objects.count() == conversations and Message.objects.count() == 0
    assert callbacks == [] and enqueued == [] and fake_engine.prompts == []
    [record] = _refusals()
    assert record.subject == "route:partner_api:chat-completions" and record.actor == f"apikey:{api_key.prefix}"
    assert record.tenant == "demo" and audit_verify().ok


def test_a_raising_stream_request_is_refused_before_any_stream_starts(partner_key, fake_engine, enqueued,
                                                                      monkeypatch):
    key, _ = partner_key
    monkeypatch.setattr(pipeline_module, "_pii_redact", _raising)
    body = {"model": "finance", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    response = Client().post("/v1/chat/completions", data=json.dumps(body), content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 503 and not response.streaming
    assert response.json()["error"]["code"] == "safety_blocked"
    assert Message.objects.count() == 0 and enqueued == [] and fake_engine.prompts == []


# -- a guarded view that forgets the pipeline is caught ---------------------------------------------


def test_a_chat_view_that_skips_the_pipeline_is_refused_and_its_turn_rolled_back(
        browser, conversation_id, fake_engine, enqueued, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr("apps.conversations.views.turn_submit", _turn_submit_without_pipeline)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = _post(browser, f"/chat/api/conversations/{conversation_id}/messages", {"text": QUESTION})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "safety_blocked" and error["data"] == {"reason": "pipeline_skipped"}
    # The view's writes ran in the guard's transaction, rolled back: nothing stored, nothing enqueued.
    assert Message.objects.count() == 0 and Outbox.objects.count() == 0
    assert callbacks == [] and enqueued == [] and fake_engine.prompts == []
    [record] = _refusals()
    assert [v["rule"] for v in record.verdicts] == ["guard.pipeline_skipped"] and audit_verify().ok


def test_a_partner_view_that_skips_the_pipeline_is_refused_and_the_worker_will_not_run_its_turn(
        partner_key, fake_engine, enqueued, monkeypatch, django_capture_on_commit_callbacks):
    key, _ = partner_key
    monkeypatch.setattr("apps.partner_api.completions.turn_submit", _turn_submit_without_pipeline)
    body = {"model": "finance", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post("/v1/chat/completions", data=json.dumps(body), content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 500 and not response.streaming
    assert response.json()["error"]["code"] == "safety_blocked"
    assert [r.subject for r in _refusals()] == ["route:partner_api:chat-completions"]
    # /v1 waits for the worker inside the request, so its turn is not rolled back: the worker refuses it.
    [reply_id] = enqueued
    reply = reply_generate(reply_id=reply_id)
    assert reply.status == Status.FAILED and reply.error["code"] == "safety_blocked"
    assert fake_engine.prompts == []
    events = [(event, data) for _id, event, data in stream_bus().read(reply_id, None, 0)]
    assert [event for event, _ in events] == ["error"] and "safety input stage" in events[0][1]["message"]
    assert AuditRecord.objects.filter(event="turn.failed", subject=reply_id).count() == 1 and audit_verify().ok


# -- the worker refuses a turn whose input verdict is missing ----------------------------------------


@pytest.fixture
def conversation(packs: Any, customer: Any) -> Conversation:
    from apps.accounts.services import demo_tenant_get

    return conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")


@pytest.mark.parametrize("tamper", [
    {"verdicts": []},
    {"verdicts": [{"stage": "output", "rule": "rules", "action": "allow"}]},
])
def test_the_worker_refuses_a_turn_without_an_input_verdict(conversation, fake_engine, tamper):
    submitted = turn_submit(conversation=conversation, text=QUESTION)
    Message.objects.filter(pk=submitted.user_message.pk).update(**tamper)
    reply = reply_generate(reply_id=str(submitted.reply.id))
    assert reply.status == Status.FAILED and reply.error["code"] == "safety_blocked"
    assert fake_engine.prompts == [] and reply.content == ""
    assert AuditRecord.objects.get(event="turn.failed", subject=str(reply.id)) and audit_verify().ok


def test_the_worker_refuses_a_blocked_turn_whose_action_was_flipped_to_allow(conversation, fake_engine,
                                                                             monkeypatch):
    monkeypatch.setattr(pipeline_module, "_jailbreak_check", _raising)  # no guard here: the turn is blocked
    submitted = turn_submit(conversation=conversation, text=QUESTION)
    assert submitted.reply.input_action == "block"
    Message.objects.filter(pk=submitted.reply.pk).update(input_action="allow")
    reply = reply_generate(reply_id=str(submitted.reply.id))
    assert reply.status == Status.FAILED and fake_engine.prompts == []


def test_the_worker_runs_a_checked_turn_and_a_regenerated_one(browser, conversation_id, fake_engine, enqueued,
                                                              django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = _post(browser, f"/chat/api/conversations/{conversation_id}/messages", {"text": QUESTION})
    assert first.status_code == 202
    assert reply_generate(reply_id=first.json()["reply_id"]).status == Status.COMPLETE
    with django_capture_on_commit_callbacks(execute=True):
        again = _post(browser, f"/chat/api/conversations/{conversation_id}/regenerate")
    assert again.status_code == 202 and enqueued == [first.json()["reply_id"], again.json()["reply_id"]]
    assert reply_generate(reply_id=again.json()["reply_id"]).status == Status.COMPLETE
    assert len(fake_engine.prompts) == 2 and _refusals() == []


@pytest.mark.parametrize(("action", "verdicts", "ok"), [
    ("allow", [{"stage": "input", "rule": "crisis", "action": "allow"},
               {"stage": "input", "rule": "pii", "action": "redact"}], True),
    ("block", [{"stage": "input", "rule": "rules", "action": "block"}], True),
    ("block", [{"stage": "input", "rule": "classifier.offscope", "action": "refuse"}], True),
    ("escalate", [{"stage": "input", "rule": "crisis", "action": "escalate"},
                  {"stage": "input", "rule": "rules", "action": "block"}], True),
    ("allow", [], False),
    ("allow", None, False),
    ("", [{"stage": "input", "rule": "crisis", "action": "allow"}], False),
    ("allow", [{"stage": "input", "rule": "jailbreak.error", "action": "block"}], False),
    ("block", [{"stage": "input", "rule": "crisis", "action": "escalate"}], False),
])
def test_input_verdict_problem(action, verdicts, ok):
    assert (input_verdict_problem(input_action=action, verdicts=verdicts) is None) is ok


# -- what is guarded, and what is not ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "guarded"), [
    ("post", "/chat/api/conversations/abc/messages", "conversations:messages"),
    ("post", "/chat/api/conversations/abc/regenerate", "conversations:regenerate"),
    ("post", "/v1/chat/completions", "partner_api:chat-completions"),
    ("get", "/chat/api/replies/abc/events", None),  # the read-only streams relay what was checked already
    ("get", "/chat/api/conversations/abc/events", None),
    ("get", "/chat/api/conversations/abc", None),
    ("post", "/chat/api/conversations", None),
    ("post", "/chat/api/replies/abc/cancel", None),
    ("post", "/v1/conversations", None),
    ("get", "/v1/chat/completions", None),
])
def test_the_guarded_routes_are_the_ones_that_make_the_model_speak(method, path, guarded):
    middleware = SafetyGuardMiddleware(lambda request: None)
    route = middleware.route_for(getattr(RequestFactory(), method)(path))
    assert (route.name if route else None) == guarded


def test_a_renamed_guarded_route_stops_the_server_from_starting():
    routes = {**guarded_routes(), "conversations:messagez": GuardedRoute("conversations:messagez")}
    with pytest.raises(ImproperlyConfigured, match="conversations:messagez"):
        guarded_routes_check(routes)
    guarded_routes_check({**guarded_routes(), "kiosk:ask": GuardedRoute("kiosk:ask")})  # door not mounted


def test_outside_a_request_a_raising_check_still_blocks_the_message(packs, monkeypatch):
    from apps.prompt_packs.selectors import pack_published_get

    monkeypatch.setattr(pipeline_module, "_jailbreak_check", _raising)
    pipeline = SafetyPipeline.for_pack(pack_published_get(domain="finance"))
    assert guard_current() is None
    decision = pipeline.check_input(QUESTION)
    assert decision.action == "block" and "jailbreak.error" in decision.rules()
    with request_guard("test") as guard, pytest.raises(Exception) as info:
        pipeline.check_input(QUESTION)
    assert info.value is guard.failure and guard.failure.status == 503 and not guard.input_ran


# -- under ASGI (uvicorn's path through Django) --------------------------------------------------------


def test_under_asgi_the_guard_sees_the_pipeline_and_refuses_a_raising_check(customer, conversation, fake_engine,
                                                                           enqueued, monkeypatch):
    """The guard is a context variable: the mark the view's pipeline makes must reach the middleware
    across the thread hops of Django's ASGI handler, or every normal turn would be refused."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    client.force_login(customer)
    url = f"/chat/api/conversations/{conversation.id}/messages"
    ok = async_to_sync(client.post)(url, data={"text": QUESTION}, content_type="application/json")
    assert ok.status_code == 202 and _refusals() == []
    monkeypatch.setattr(pipeline_module, "_jailbreak_check", _raising)
    refused = async_to_sync(client.post)(url, data={"text": QUESTION}, content_type="application/json")
    assert refused.status_code == 503 and refused.json()["error"]["data"]["rules"] == ["jailbreak.error"]
    assert Message.objects.count() == 2 and len(_refusals()) == 1 and fake_engine.prompts == []


def test_more_routes_can_be_guarded_from_settings_and_html_routes_get_an_html_error(settings):
    from apps.core.errors import ApplicationError, ErrorCode
    from apps.safety.middleware import error_for

    settings.VERITY_SAFETY_GUARDED_ROUTES = [{"name": "conversations:chat", "methods": ("GET",), "style": "html"}]
    route = guarded_routes()["conversations:chat"]
    assert SafetyGuardMiddleware(lambda request: None).route_for(RequestFactory().get("/chat/")) == route
    page = error_for(route, ApplicationError(ErrorCode.SAFETY_BLOCKED, "<b>refused</b>", status=503))
    assert page.status_code == 503 and page["Content-Type"].startswith("text/html")
    assert b"&lt;b&gt;refused&lt;/b&gt;" in page.content and page["Retry-After"]
