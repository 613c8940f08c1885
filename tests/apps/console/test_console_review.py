"""Review queue: flagged replies appear once, can be filtered, assigned, annotated, resolved; an
expert's human reply is stored in the conversation, marked as human, audited and published live."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditRecord


def test_blocked_escalated_and_retracted_replies_are_queued_once(staff, make_flagged):
    blocked = make_flagged(staff.tenant, staff.users["customer"], input_action="block")
    escalated = make_flagged(staff.tenant, staff.users["customer"], input_action="escalate",
                             content="If you are in crisis, call 988.")
    filtered = make_flagged(staff.tenant, staff.users["customer"], input_action="allow",
                            finish_reason="content_filter", content="Sorry, I cannot continue.")
    make_flagged(staff.tenant, staff.users["customer"], input_action="allow", content="Fine answer.")
    client = staff.client("expert")
    page = client.get("/console/review/").content.decode()
    assert page.count('data-reason="blocked"') == 2 and page.count('data-reason="escalated"') == 1
    assert "Fine answer." not in page
    client.get("/console/review/")  # syncing again adds nothing
    from apps.console.models import ReviewItem

    assert ReviewItem.objects.count() == 3
    assert {i.message_id for i in ReviewItem.objects.all()} == {blocked.id, escalated.id, filtered.id}
    only_escalated = client.get("/console/review/?reason=escalated").content.decode()
    assert "call 988" in only_escalated and "cannot continue" not in only_escalated


def test_assign_annotate_resolve_are_audited(staff, make_flagged):
    from apps.console.models import ReviewItem
    from apps.console.review_services import review_queue_sync

    make_flagged(staff.tenant, staff.users["customer"])
    review_queue_sync(tenant=staff.tenant)
    item = ReviewItem.objects.get()
    client = staff.client("expert")
    client.post(f"/console/review/{item.id}/assign")
    client.post(f"/console/review/{item.id}/annotate", {"text": "Refusal was right; add a CTR explainer."})
    empty = client.post(f"/console/review/{item.id}/annotate", {"text": "  "}, follow=True)
    assert "must not be empty" in empty.content.decode()
    client.post(f"/console/review/{item.id}/resolve", {"text": "done"})
    item.refresh_from_db()
    assert item.status == "resolved" and item.assignee == staff.users["expert"]
    assert item.resolved_by == staff.users["expert"]
    assert item.notes.count() == 2
    page = client.get(f"/console/review/{item.id}/").content.decode()
    assert "add a CTR explainer" in page
    events = set(AuditRecord.objects.filter(tenant="demo").values_list("event", flat=True))
    assert {"review.assigned", "review.annotated", "review.resolved"} <= events
    again = client.post(f"/console/review/{item.id}/resolve", follow=True)
    assert "resolved already" in again.content.decode()


def test_human_reply_reaches_the_conversation_and_its_stream(staff, make_flagged,
                                                            django_capture_on_commit_callbacks):
    from apps.console.models import ReviewItem
    from apps.console.review_services import review_queue_sync
    from apps.conversations.streams import conversation_stream_key, stream_bus

    reply = make_flagged(staff.tenant, staff.users["customer"], input_action="escalate")
    review_queue_sync(tenant=staff.tenant)
    item = ReviewItem.objects.get()
    client = staff.client("expert")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/console/review/{item.id}/reply",
                               {"text": "Hello, I'm Dana from our advice team. Let's talk."})
    assert response.status_code == 302
    events = stream_bus().read(conversation_stream_key(reply.conversation_id), None, 0)
    assert [e[1] for e in events] == ["human.message"]
    assert events[0][2]["author"] == "human" and "Dana" in events[0][2]["content"]
    # The customer's own conversation API now holds the reply.
    owner = staff.client("customer")
    detail = owner.get(f"/chat/api/conversations/{reply.conversation_id}").json()
    assert detail["messages"][-1]["content"].startswith("Hello, I'm Dana")
    page = client.get(f"/console/review/{item.id}/").content.decode()
    assert "Human expert" in page
    assert AuditRecord.objects.filter(event="review.human_reply", tenant="demo").exists()


def test_a_talk_to_a_human_request_is_queued_as_such(staff, make_flagged):
    from apps.console.models import ReviewItem
    from apps.console.review_services import review_queue_sync
    from apps.conversations.models import Message

    reply = make_flagged(staff.tenant, staff.users["customer"], input_action="escalate")
    Message.objects.filter(pk=reply.pk).update(verdicts=[
        {"stage": "input", "rule": "fin.human_request", "action": "escalate", "score": 1.0, "latency_ms": 0.1}])
    review_queue_sync(tenant=staff.tenant)
    assert list(ReviewItem.objects.values_list("reason", flat=True)) == ["human"]


def test_thumbs_down_and_handoff_requests_are_queued(staff, make_flagged):
    from apps.conversations import models as conversation_models

    if not hasattr(conversation_models, "HandoffRequest") or not hasattr(conversation_models, "Feedback"):
        pytest.skip("apps.conversations has no Feedback/HandoffRequest models yet")
    from apps.console.models import ReviewItem
    from apps.console.review_services import review_queue_sync

    reply = make_flagged(staff.tenant, staff.users["customer"], input_action="allow", content="A plain answer.")
    conversation_models.Feedback.objects.create(tenant=staff.tenant, message=reply, user=staff.users["customer"],
                                                rating="down", reason="wrong")
    conversation_models.HandoffRequest.objects.create(tenant=staff.tenant, conversation=reply.conversation,
                                                      requested_by=staff.users["customer"])
    assert review_queue_sync(tenant=staff.tenant) == 2
    assert review_queue_sync(tenant=staff.tenant) == 0
    assert sorted(ReviewItem.objects.values_list("reason", flat=True)) == ["feedback", "human"]
