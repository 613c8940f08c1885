"""Canary share in the console: an approver sends a share of NEW conversations to an approved candidate,
conversations created through `conversation_create` keep the version they got, the console compares the
versions (conversations, feedback, block and escalation rates) for the viewer's organisation only, and
ending the share sends every new conversation to the published version again. Every step is audited.
"""

from __future__ import annotations

import pytest

from apps.audit.models import AuditRecord


@pytest.fixture
def candidate(staff):
    """finance v2, drafted by the expert and approved by the approver (its evaluation gate is the
    subject of test_console_pack_lifecycle; here the pack service approves directly)."""
    from apps.prompt_packs.selectors import pack_published_get
    from apps.prompt_packs.services import pack_version_approve, pack_version_create_draft

    published = pack_published_get(domain="finance")
    draft = pack_version_create_draft(domain="finance", data={**published.data, "title": "Finance candidate"},
                                      actor=staff.users["expert"])
    return pack_version_approve(version=draft, actor=staff.users["approver"])


def _new_conversations(staff, n):
    from apps.conversations.services import conversation_create

    return [conversation_create(tenant=staff.tenant, user=staff.users["customer"], domain="finance")
            for _ in range(n)]


def test_an_approver_starts_a_share_and_new_conversations_split_between_versions(staff, candidate):
    response = staff.client("approver").post(f"/console/packs/{candidate.pk}/canary", {"percent": "50"})
    assert response.status_code == 302 and response["Location"] == "/console/packs/canary/finance/"
    assert AuditRecord.objects.filter(event="pack.canary_set", actor="user:demo-approver").exists()
    conversations = _new_conversations(staff, 60)
    on_candidate = [c for c in conversations if c.pack_version_id == candidate.pk]
    assert 15 <= len(on_candidate) <= 45  # 50 % of random ids; exact shares are the selector tests' subject

    from apps.prompt_packs.selectors import canary_bucket

    assert all((c.pack_version_id == candidate.pk) == (canary_bucket(c.id) < 5000) for c in conversations)
    staff.client("approver").post("/console/packs/canary/finance/clear")
    assert AuditRecord.objects.filter(event="pack.canary_cleared").count() == 1
    from apps.prompt_packs.selectors import pack_published_get

    published = pack_published_get(domain="finance")
    assert {c.pack_version_id for c in _new_conversations(staff, 10)} == {published.pk}
    for conversation in on_candidate:  # conversations keep the version they started with
        conversation.refresh_from_db()
        assert conversation.pack_version_id == candidate.pk


def test_the_comparison_shows_conversations_feedback_and_rates_per_version(staff, other_staff, candidate,
                                                                           make_flagged):
    from apps.conversations.actions import feedback_submit
    from apps.conversations.models import Conversation, Message, Role, Status
    from apps.prompt_packs.services import pack_canary_set

    blocked = make_flagged(staff.tenant, staff.users["customer"])  # before the share: on the published version
    feedback_submit(message=blocked, user=staff.users["customer"], rating="down")
    make_flagged(other_staff.tenant, other_staff.users["customer"])  # another organisation: not counted
    pack_canary_set(version=candidate, percent=50, actor=staff.users["approver"])
    conversation = next(c for c in _new_conversations(staff, 40) if c.pack_version_id == candidate.pk)
    question = Message.objects.create(conversation=conversation, role=Role.USER, content="What is an ETF?",
                                      pack_version=candidate)
    answer = Message.objects.create(conversation=conversation, role=Role.ASSISTANT, status=Status.COMPLETE,
                                    content="An exchange-traded fund.", reply_to=question, pack_version=candidate,
                                    finish_reason="stop")
    feedback_submit(message=answer, user=staff.users["customer"], rating="up")

    page = staff.client("expert").get("/console/packs/canary/finance/").content.decode()
    table = page[page.index('data-testid="canary-table"'):]
    published_row = table[table.index('data-role="published"'):table.index('data-role="canary"')]
    canary_row = table[table.index('data-role="canary"'):]
    canary_row = canary_row[:canary_row.index("</tr>")]
    on_candidate = Conversation.objects.filter(tenant=staff.tenant, pack_version=candidate).count()
    on_published = Conversation.objects.filter(tenant=staff.tenant, domain="finance").count() - on_candidate
    assert f"<td>{on_published}</td>" in published_row and f"<td>{on_candidate}</td>" in canary_row
    assert "<td>0 / 1</td>" in published_row and "<td>1 / 0</td>" in canary_row
    assert "<td>1</td><td>100%</td>" in published_row  # the blocked reply: 1 of 1
    assert "<td>0</td><td>0%</td>" in canary_row
    assert "<strong>50%</strong>" in page  # the state line names the share
    assert 'data-testid="canary-form"' not in page  # an expert may look, not change the share


def test_validation_errors_come_back_as_a_message_and_change_nothing(staff, candidate):
    from apps.prompt_packs.models import PackCanary

    response = staff.client("admin").post(f"/console/packs/{candidate.pk}/canary", {"percent": "150"},
                                          follow=True)
    assert "whole percentage from 1 to 99" in response.content.decode()
    assert not PackCanary.objects.exists()
    published = candidate.__class__.objects.get(domain="finance", status="published")
    response = staff.client("admin").post(f"/console/packs/{published.pk}/canary", {"percent": "10"}, follow=True)
    assert "must be approved" in response.content.decode() and not PackCanary.objects.exists()
    assert staff.client("admin").get("/console/packs/canary/astrology/").status_code == 404
