"""Stop, regenerate, feedback, export, delete, rename and search through the chat JSON API.

Real PostgreSQL and Redis Streams (services mode); the stand-in engine replaces model_core, because
these tests are about what the customer sees stored, streamed and audited. Replies are generated
in-process with `reply_generate`, as the worker would.
"""

from __future__ import annotations

import json

import pytest

from apps.audit.models import AuditRecord
from apps.audit.services import audit_verify
from apps.conversations.models import Conversation, Feedback, Message, Status
from apps.conversations.services import reply_generate
from apps.conversations.streams import stream_bus

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(customer, packs):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(customer)
    client.get("/chat/")
    client.csrf = client.cookies["csrftoken"].value
    return client


def _call(client, method, url, body=None):
    data = json.dumps(body) if body is not None else ""
    return getattr(client, method)(url, data=data, content_type="application/json", HTTP_X_CSRFTOKEN=client.csrf)


def _turn(client, conversation_id, text, *, generate=True):
    response = _call(client, "post", f"/chat/api/conversations/{conversation_id}/messages", {"text": text})
    assert response.status_code == 202, response.content
    reply_id = response.json()["reply_id"]
    if generate:
        reply_generate(reply_id=reply_id)
    return reply_id


def _events(reply_id):
    return [(event, data) for _id, event, data in stream_bus().read(str(reply_id), None, 0)]


@pytest.fixture
def conversation_id(browser):
    return _call(browser, "post", "/chat/api/conversations", {"domain": "finance"}).json()["id"]


def test_stop_mid_answer_keeps_the_partial_answer_as_cancelled(browser, conversation_id, fake_engine, monkeypatch):
    from apps.inference import services as inference

    produced = []
    reply_id = _turn(browser, conversation_id, "What is compound interest?", generate=False)

    def stream(*, messages, sampling, max_tokens, profile="r1"):
        for chunk in fake_engine.stream(messages, max_tokens):
            produced.append(chunk)
            if chunk.kind == "answer" and sum(c.kind == "answer" for c in produced) == 3:
                # The customer presses stop while the third answer token is on its way.
                assert _call(browser, "post", f"/chat/api/replies/{reply_id}/cancel").status_code == 202
            yield chunk

    monkeypatch.setattr(inference, "generation_stream", stream)
    reply = reply_generate(reply_id=reply_id)
    assert reply.status == Status.CANCELLED and reply.finish_reason == "cancelled"
    full_answer = fake_engine.answer.split(" ")
    assert sum(c.kind == "answer" for c in produced) == 3 < len(full_answer)  # the engine loop stopped
    assert reply.content.split() == full_answer[:2]  # what was shown before stop is what is stored
    events = _events(reply_id)
    assert events[-1][0] == "done" and events[-1][1]["finish_reason"] == "cancelled"
    shown = "".join(d["text"] for e, d in events if e == "answer.delta")
    assert shown.split()[:2] == full_answer[:2] and "earned" not in shown  # (the disclaimer follows)
    detail = browser.get(f"/chat/api/conversations/{conversation_id}").json()
    assert detail["messages"][-1]["status"] == "cancelled"


def test_stop_after_the_answer_finished_changes_nothing(browser, conversation_id, fake_engine):
    reply_id = _turn(browser, conversation_id, "What is compound interest?")
    response = _call(browser, "post", f"/chat/api/replies/{reply_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "complete"
    assert Message.objects.get(pk=reply_id).status == Status.COMPLETE


def test_regenerate_answers_the_last_question_again_and_hides_the_old_reply(browser, conversation_id,
                                                                            fake_engine):
    _turn(browser, conversation_id, "What is a bond?")
    old_id = _turn(browser, conversation_id, "What is compound interest?")
    fake_engine.answer = "A second, different answer. "
    response = _call(browser, "post", f"/chat/api/conversations/{conversation_id}/regenerate")
    assert response.status_code == 202, response.content
    new_id = response.json()["reply_id"]
    reply_generate(reply_id=new_id)
    old, new = Message.objects.get(pk=old_id), Message.objects.get(pk=new_id)
    assert old.superseded_by_id == new.id and old.status == Status.COMPLETE  # kept as a record
    assert new.reply_to_id == old.reply_to_id and "second, different" in new.content
    contents = [m["content"] for m in browser.get(f"/chat/api/conversations/{conversation_id}").json()["messages"]]
    assert len(contents) == 4 and "second, different" in contents[-1]
    assert not any("Compound interest is interest" in c for c in contents[3:])
    # The regenerated prompt holds the earlier turn but not the replaced reply.
    assert [m["content"] for m in fake_engine.prompts[-1]].count("What is compound interest?") == 1


def test_regenerate_keeps_the_request_settings_but_not_its_seed(browser, conversation_id, fake_engine):
    from apps.conversations.actions import reply_regenerate
    from apps.conversations.services import turn_submit

    conversation = Conversation.objects.get(pk=conversation_id)
    first = turn_submit(conversation=conversation, text="What is a bond?",
                        sampling={"max_tokens": 40, "stop": ["END"], "seed": 7, "temperature": 0.3})
    reply_generate(reply_id=first.reply.id)
    again = reply_regenerate(conversation=conversation)
    assert again.sampling["max_tokens"] == 40 and again.sampling["stop"] == ["END"]
    assert again.sampling["temperature"] == 0.3 and "seed" not in again.sampling


def test_regenerate_while_an_answer_is_streaming_is_a_conflict(browser, conversation_id):
    _turn(browser, conversation_id, "What is a bond?", generate=False)
    response = _call(browser, "post", f"/chat/api/conversations/{conversation_id}/regenerate")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


def test_feedback_is_stored_once_per_user_and_validated(browser, conversation_id, fake_engine):
    reply_id = _turn(browser, conversation_id, "What is compound interest?")
    url = f"/chat/api/messages/{reply_id}/feedback"
    assert _call(browser, "post", url, {"rating": "up"}).status_code == 201
    response = _call(browser, "post", url, {"rating": "down", "reason": "too vague"})
    assert response.status_code == 201 and response.json()["rating"] == "down"
    assert [(f.rating, f.reason) for f in Feedback.objects.all()] == [("down", "too vague")]
    bad = _call(browser, "post", url, {"rating": "meh"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "rating"
    question = Message.objects.get(pk=reply_id).reply_to_id
    assert _call(browser, "post", f"/chat/api/messages/{question}/feedback", {"rating": "up"}).status_code == 409


def test_export_markdown_and_json_download_and_are_audited(browser, conversation_id, fake_engine):
    _turn(browser, conversation_id, "What is compound interest?")
    md = browser.get(f"/chat/api/conversations/{conversation_id}/export?format=md")
    assert md.status_code == 200 and md["Content-Disposition"].startswith("attachment;")
    text = md.content.decode()
    assert "## You" in text and "What is compound interest?" in text and "Compound interest is" in text
    body = json.loads(browser.get(f"/chat/api/conversations/{conversation_id}/export?format=json").content)
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"] and body["domain"] == "finance"
    assert browser.get(f"/chat/api/conversations/{conversation_id}/export?format=pdf").status_code == 400
    assert AuditRecord.objects.filter(event="conversation.exported", subject=conversation_id).count() == 2
    assert audit_verify().ok


def test_delete_hides_the_conversation_but_keeps_the_record(browser, conversation_id, fake_engine):
    reply_id = _turn(browser, conversation_id, "What is compound interest?")
    assert _call(browser, "delete", f"/chat/api/conversations/{conversation_id}").status_code == 204
    assert browser.get(f"/chat/api/conversations/{conversation_id}").status_code == 404
    assert browser.get(f"/chat/api/conversations/{conversation_id}/export?format=md").status_code == 404
    assert browser.get(f"/chat/api/replies/{reply_id}/events").status_code == 404
    assert browser.get("/chat/api/conversations").json()["conversations"] == []
    assert _call(browser, "delete", f"/chat/api/conversations/{conversation_id}").status_code == 404
    # The regulated record stays: messages in the database, the turn and the deletion in the audit chain.
    assert Message.objects.filter(conversation_id=conversation_id).count() == 2
    assert Conversation.objects.get(pk=conversation_id).deleted_at is not None
    events = set(AuditRecord.objects.values_list("event", flat=True))
    assert {"turn.completed", "conversation.deleted"} <= events and audit_verify().ok


def test_rename_and_search(browser, conversation_id, fake_engine):
    _turn(browser, conversation_id, "What is compound interest?")
    other = _call(browser, "post", "/chat/api/conversations", {"domain": "legal"}).json()["id"]
    fake_engine.answer = "Small claims courts hear disputes under a set amount. "
    _turn(browser, other, "How does small claims court work?")
    response = _call(browser, "patch", f"/chat/api/conversations/{conversation_id}", {"title": "Savings plan"})
    assert response.status_code == 200 and response.json()["title"] == "Savings plan"
    assert _call(browser, "patch", f"/chat/api/conversations/{conversation_id}", {"title": "  "}).status_code == 400

    def search(q):
        return [c["id"] for c in browser.get("/chat/api/conversations", {"q": q}).json()["conversations"]]

    assert search("savings") == [conversation_id]
    assert search("small claims") == [other]
    assert search("interest earned") == [conversation_id]  # matches the answer text too
    assert search("") == [other, conversation_id]
    assert search("nothing like this") == []


def test_another_customer_cannot_touch_the_conversation(browser, conversation_id, fake_engine, db):
    from django.test import Client

    from apps.accounts.services import demo_tenant_get, user_create

    reply_id = _turn(browser, conversation_id, "What is compound interest?")
    mallory = user_create(tenant=demo_tenant_get(), username="mallory", password="x" * 12, validate=False)
    client = Client()
    client.force_login(mallory)
    for method, url in (("post", f"/chat/api/replies/{reply_id}/cancel"),
                        ("post", f"/chat/api/conversations/{conversation_id}/regenerate"),
                        ("post", f"/chat/api/messages/{reply_id}/feedback"),
                        ("get", f"/chat/api/conversations/{conversation_id}/export"),
                        ("delete", f"/chat/api/conversations/{conversation_id}"),
                        ("post", f"/chat/api/conversations/{conversation_id}/handoff")):
        body = {} if method == "get" else {"data": json.dumps({"rating": "up"}), "content_type": "application/json"}
        response = getattr(client, method)(url, **body)
        assert response.status_code == 404, (method, url, response.status_code)
    assert Conversation.objects.get(pk=conversation_id).deleted_at is None
