"""Escalation, "talk to a human" and an expert's reply reaching an open chat page live.

Real PostgreSQL and Redis Streams; the real medical pack and safety pipeline decide what escalates.
The engine is the stand-in: an escalated turn must not call it at all.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync

from apps.accounts.services import demo_tenant_get, user_create
from apps.audit.models import AuditRecord
from apps.conversations.actions import human_reply_post
from apps.conversations.models import Conversation, HandoffRequest, HandoffStatus, Message
from apps.conversations.services import reply_generate
from apps.conversations.streams import stream_bus
from apps.core.errors import ApplicationError

pytestmark = pytest.mark.django_db


def _post(client, url, body=None):
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


@pytest.fixture
def medical_id(customer_client, packs):
    return _post(customer_client, "/chat/api/conversations", {"domain": "medical"}).json()["id"]


def test_an_emergency_gets_the_pack_text_and_an_escalation_event_without_a_model_call(
        customer_client, medical_id, fake_engine):
    response = _post(customer_client, f"/chat/api/conversations/{medical_id}/messages",
                     {"text": "I have crushing chest pain and my left arm feels numb."})
    reply_id = response.json()["reply_id"]
    reply_generate(reply_id=reply_id)
    pack = Conversation.objects.get(pk=medical_id).pack_version
    events = [(e, d) for _i, e, d in stream_bus().read(reply_id, None, 0)]
    assert events[0] == ("escalation", {"kind": "emergency", "text": pack.escalation["emergency"].strip()})
    assert "emergency" in events[1][1]["text"].lower()
    done = events[-1][1]
    assert events[-1][0] == "done" and done["escalation"]["kind"] == "emergency"
    assert fake_engine.prompts == []  # nothing went to the model
    message = customer_client.get(f"/chat/api/conversations/{medical_id}").json()["messages"][-1]
    assert message["escalation"]["kind"] == "emergency" and message["content"] == done["content"]


def _conversation_frames(client, conversation_id, count, headers=None):
    response = client.get(f"/chat/api/conversations/{conversation_id}/events", **(headers or {}))
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"

    async def collect():
        frames = []
        async for chunk in response.streaming_content:
            # One chunk may carry several frames (the relay sends what one read returned at once).
            for text in chunk.decode().split("\n\n"):
                if text.startswith("id:"):
                    frames.append(dict(line.split(": ", 1) for line in text.strip().splitlines()))
                if len(frames) == count:
                    return frames
        return frames

    async def bounded():  # the stream never ends by itself: a missing event must fail, not hang
        return await asyncio.wait_for(collect(), timeout=10)

    return async_to_sync(bounded)()


def test_talk_to_a_human_queues_a_request_and_the_experts_reply_arrives_live(
        customer_client, medical_id, django_capture_on_commit_callbacks):
    url = f"/chat/api/conversations/{medical_id}/handoff"
    with django_capture_on_commit_callbacks(execute=True):
        first = _post(customer_client, url, {"reason": "I would rather ask a nurse"})
    assert first.status_code == 201 and first.json()["status"] == "open"
    assert _post(customer_client, url).json()["id"] == first.json()["id"]  # one open request at a time
    queue = HandoffRequest.objects.filter(tenant=demo_tenant_get(), status=HandoffStatus.OPEN)
    assert [h.reason for h in queue] == ["I would rather ask a nurse"]
    assert AuditRecord.objects.filter(event="escalation.requested", subject=medical_id).count() == 1

    nurse = user_create(tenant=demo_tenant_get(), username="nurse", password="x" * 12, validate=False)
    with django_capture_on_commit_callbacks(execute=True):
        message = human_reply_post(conversation=Conversation.objects.get(pk=medical_id), expert=nurse,
                                   text="Hello, I am a nurse on the care team. How can I help?")
    assert message.engine_profile == "human" and HandoffRequest.objects.get().status == HandoffStatus.ANSWERED
    frames = _conversation_frames(customer_client, medical_id, 2)
    assert [f["event"] for f in frames] == ["handoff.requested", "human.message"]
    data = json.loads(frames[1]["data"])
    assert data["author"] == "human" and data["message_id"] == str(message.id) and "nurse" in data["content"]
    # Resuming after the first frame gets only the expert's message.
    resumed = _conversation_frames(customer_client, medical_id, 1, {"HTTP_LAST_EVENT_ID": frames[0]["id"]})
    assert [f["event"] for f in resumed] == ["human.message"]
    stored = customer_client.get(f"/chat/api/conversations/{medical_id}").json()["messages"]
    assert stored[-1]["human"] is True and AuditRecord.objects.filter(event="review.human_reply").exists()


def test_human_reply_rejects_empty_text_and_strangers_cannot_subscribe(customer_client, medical_id):
    from django.test import Client

    nurse = user_create(tenant=demo_tenant_get(), username="nurse2", password="x" * 12, validate=False)
    with pytest.raises(ApplicationError):
        human_reply_post(conversation=Conversation.objects.get(pk=medical_id), expert=nurse, text="  ")
    assert not Message.objects.filter(conversation_id=medical_id).exists()
    stranger = Client()
    stranger.force_login(nurse)
    assert stranger.get(f"/chat/api/conversations/{medical_id}/events").status_code == 404
    assert Client().get(f"/chat/api/conversations/{medical_id}/events").status_code == 401
