"""Conversations, messages, feedback and escalations as a partner uses them; continuing a conversation
through chat completions; deleting the partner's copy keeps the regulated record.
"""

from __future__ import annotations

import pytest
from django.test import Client

from apps.audit.models import AuditRecord
from apps.conversations.models import Conversation
from apps.partner_api.models import Escalation, Feedback
from tests.apps.partner_api.conftest import bearer


def _post(key: str, url: str, body: dict) -> object:
    return Client().post(url, body, content_type="application/json", **bearer(key))


def test_list_pages_with_a_cursor_newest_first_without_gaps_or_repeats(issue):
    key, _ = issue()
    created = [_post(key, "/v1/conversations", {"model": "finance", "title": f"c{i}"}).json()["id"]
               for i in range(5)]
    seen, after, pages = [], None, 0
    while True:
        query = {"limit": 2, **({"after": after} if after else {})}
        page = Client().get("/v1/conversations", query, **bearer(key)).json()
        seen += [c["id"] for c in page["data"]]
        pages += 1
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        after = page["next_cursor"]
    assert seen == list(reversed(created)) and pages == 3


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 101}, {"after": "not-a-cursor"}])
def test_bad_list_parameters_are_400(issue, query):
    key, _ = issue()
    response = Client().get("/v1/conversations", query, **bearer(key))
    assert response.status_code == 400 and response.json()["error"]["param"] in ("limit", "after")


def test_create_rejects_an_unknown_model(issue):
    key, _ = issue()
    response = _post(key, "/v1/conversations", {"model": "astrology"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


def test_a_conversation_continues_through_chat_completions(issue, inline_worker, client_for):
    key, _ = issue()
    conversation = _post(key, "/v1/conversations", {"model": "finance-zero"}).json()
    client = client_for(key)
    for question in ("What is a bond?", "And a coupon?"):
        reply = client.chat.completions.create(model="finance-zero", messages=[{"role": "user", "content": question}],
                                               extra_body={"conversation": conversation["id"]})
        assert reply.model_extra["verity"]["conversation_id"] == conversation["id"]
    # The second turn saw the first one as history.
    assert any("What is a bond?" in m["content"] for m in inline_worker.prompts[-1])
    messages = Client().get(f"/v1/conversations/{conversation['id']}/messages", **bearer(key)).json()["data"]
    assert [(m["role"], m["status"]) for m in messages] == [("user", "complete"), ("assistant", "complete")] * 2
    assert messages[1]["reasoning_content"] and messages[1]["content"]
    wrong_model = client.with_options(max_retries=0).chat.completions.with_raw_response
    with pytest.raises(Exception) as info:
        wrong_model.create(model="finance", messages=[{"role": "user", "content": "hi"}],
                           extra_body={"conversation": conversation["id"]})
    assert getattr(info.value, "status_code", None) == 400


def test_feedback_and_escalation_are_stored_and_escalation_is_audited(issue, inline_worker, client_for):
    key, _ = issue()
    reply = client_for(key).chat.completions.create(model="finance",
                                                    messages=[{"role": "user", "content": "What is inflation?"}])
    verity = reply.model_extra["verity"]
    url = f"/v1/conversations/{verity['conversation_id']}"
    response = _post(key, f"{url}/feedback", {"message_id": verity["message_id"], "rating": -1, "comment": "vague"})
    assert response.status_code == 201 and response.json()["rating"] == -1
    assert Feedback.objects.get().comment == "vague"
    bad = _post(key, f"{url}/feedback", {"message_id": verity["message_id"], "rating": 5})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rating"
    response = _post(key, f"{url}/escalations", {"reason": "customer disputes the answer"})
    assert response.status_code == 201 and response.json()["status"] == "open"
    assert Escalation.objects.get().conversation_id.hex == verity["conversation_id"].replace("-", "")
    assert AuditRecord.objects.filter(event="escalation.requested", subject=verity["conversation_id"]).exists()


def test_delete_hides_the_conversation_but_keeps_the_record(issue):
    key, _ = issue()
    conversation_id = _post(key, "/v1/conversations", {"model": "legal"}).json()["id"]
    response = Client().delete(f"/v1/conversations/{conversation_id}", **bearer(key))
    assert response.status_code == 200 and response.json()["deleted"] is True
    assert Client().get(f"/v1/conversations/{conversation_id}", **bearer(key)).status_code == 404
    assert Client().delete(f"/v1/conversations/{conversation_id}", **bearer(key)).status_code == 404
    assert Conversation.objects.get(pk=conversation_id).deleted_at is not None
    assert AuditRecord.objects.filter(event="conversation.deleted", subject=conversation_id).count() == 1
