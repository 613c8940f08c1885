"""The chat JSON API as a browser uses it: session auth, CSRF header, JSON bodies, 4xx JSON errors.

Every request here goes through Django's CSRF checks (enforce_csrf_checks=True) with the token sent
in X-CSRFToken, exactly as static/chat/chat.js does; bad requests must store nothing.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from apps.conversations.models import Conversation, Message, Outbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(customer, packs):
    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    client.get("/chat/")  # the page sets the csrftoken cookie
    client.csrf = client.cookies["csrftoken"].value
    return client


def _post(client, url, body, *, raw=False, csrf=True):
    headers = {"HTTP_X_CSRFTOKEN": client.csrf} if csrf else {}
    data = body if raw else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


@pytest.fixture
def conversation_id(browser):
    response = _post(browser, "/chat/api/conversations", {"domain": "finance"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["domain"] == "finance" and body["pack_version"] == 1
    return body["id"]


def _stored() -> tuple[int, int]:
    return Message.objects.count(), Outbox.objects.count()


def test_chat_page_renders_domains_and_conversations(browser, conversation_id):
    response = browser.get("/chat/")
    assert response.status_code == 200
    assert [d["slug"] for d in response.context["domains"]] == ["finance", "legal", "medical"][: len(
        response.context["domains"])]
    assert [c["id"] for c in response.context["conversations"]] == [conversation_id]


def test_a_message_is_accepted_with_202_and_an_events_url(browser, conversation_id):
    response = _post(browser, f"/chat/api/conversations/{conversation_id}/messages",
                     {"text": "What is compound interest?"})
    assert response.status_code == 202
    body = response.json()
    assert body["events_url"] == f"/chat/api/replies/{body['reply_id']}/events"
    detail = browser.get(f"/chat/api/conversations/{conversation_id}").json()
    assert [(m["role"], m["status"]) for m in detail["messages"]] == [("user", "complete"), ("assistant", "pending")]
    assert browser.get("/chat/api/conversations").json()["conversations"][0]["id"] == conversation_id


@pytest.mark.parametrize(("body", "raw", "status", "code"), [
    ({"text": ""}, False, 400, "message_empty"),
    ({"text": "a" * (1024 * 1024)}, False, 413, "message_too_long"),
    (b'{"text": "caf\xe9"}', True, 400, "invalid_encoding"),
    (b'{"text": "unterminated', True, 400, "invalid_json"),
    ({"txt": "typo"}, False, 400, "validation_error"),
    ({"text": ["not", "a", "string"]}, False, 400, "validation_error"),
])
def test_bad_messages_get_a_clear_4xx_and_nothing_is_stored(browser, conversation_id, body, raw, status, code):
    before = _stored()
    response = _post(browser, f"/chat/api/conversations/{conversation_id}/messages", body, raw=raw)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert _stored() == before


def test_unknown_domain_is_a_400_naming_it(browser):
    response = _post(browser, "/chat/api/conversations", {"domain": "astrology"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_domain" and "astrology" in error["message"] and error["field"] == "domain"
    assert Conversation.objects.count() == 0


def test_missing_csrf_token_is_a_403_json_error_and_nothing_is_stored(browser, conversation_id):
    before = _stored()
    response = _post(browser, f"/chat/api/conversations/{conversation_id}/messages", {"text": "hi"}, csrf=False)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert _stored() == before


def test_anonymous_requests_get_401_and_others_conversations_are_404(browser, conversation_id, db):
    assert Client().get("/chat/api/conversations").status_code == 401
    from apps.accounts.services import demo_tenant_get, user_create

    other = Client()
    other.force_login(user_create(tenant=demo_tenant_get(), username="eve", password="x", validate=False))
    assert other.get(f"/chat/api/conversations/{conversation_id}").status_code == 404
    assert other.get("/chat/api/conversations/not-a-uuid").status_code == 404
