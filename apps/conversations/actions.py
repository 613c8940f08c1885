"""What a customer (or an expert) does to a conversation besides sending a message.

Services, keyword-only, each validating then writing in one transaction: stop a reply, regenerate the
last answer, rate a reply, export, delete the customer's copy, rename, ask for a human, and an
expert's reply posted into the conversation. Every event that leaves a record is audited here.

Delete and retention: `conversation_delete` hides the conversation from its customer (`deleted_at`):
it leaves their list, their API and their exports at once. The messages stay in the database as the
regulated record (SEC 17a-4, FINRA 4511, HIPAA 164.316: the firm keeps what was said) under the
tenant's retention and legal-hold rules, and the audit chain keeps its `turn.*` records either way;
erasing a data subject is a separate, audited operation (`subject.erased`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_append
from apps.conversations.models import (
    TERMINAL_STATUSES,
    Conversation,
    Feedback,
    HandoffRequest,
    HandoffStatus,
    Message,
    Outbox,
    Rating,
    Role,
    Status,
)
from apps.conversations.selectors import conversation_messages_visible, message_dict
from apps.conversations.streams import conversation_stream_key, stream_bus
from apps.core.errors import ApplicationError, ErrorCode

HUMAN_PROFILE = "human"
MAX_REASON_CHARS = 2000
MAX_TITLE_CHARS = 200
EXPORT_FORMATS = ("md", "json")


def _text(value: Any, field: str, *, limit: int, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ApplicationError(ErrorCode.VALIDATION, f"Field '{field}' must be a string.", field=field)
    value = value.strip()
    if required and not value:
        raise ApplicationError(ErrorCode.VALIDATION, f"Field '{field}' must not be empty.", field=field)
    if len(value) > limit:
        raise ApplicationError(ErrorCode.VALIDATION, f"Field '{field}' is longer than {limit} characters.",
                               field=field, data={"limit": limit})
    return value


def reply_cancel(*, reply: Message) -> Message:
    """Stop a reply: the generation loop sees the flag before its next token (a finished reply is left as is)."""
    if reply.status not in TERMINAL_STATUSES:
        stream_bus().cancel_request(str(reply.id))
    return reply


def _last_turn(conversation: Conversation) -> tuple[Message, Message | None]:
    question = (Message.objects.filter(conversation=conversation, role=Role.USER)
                .order_by("-created_at").first())
    if question is None:
        raise ApplicationError(ErrorCode.CONFLICT, "There is no message to answer again yet.")
    current = (Message.objects.filter(reply_to=question, superseded_by__isnull=True)
               .order_by("-created_at").first())
    return question, current


def reply_regenerate(*, conversation: Conversation) -> Message:
    """A new reply to the last user message; the old one is kept as a record, marked superseded."""
    from apps.conversations.dispatch import reply_enqueue  # dispatch imports the services

    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()  # one regenerate at a time
        question, current = _last_turn(conversation)
        if current is not None and current.status not in TERMINAL_STATUSES:
            raise ApplicationError(ErrorCode.CONFLICT, "The answer is still being written; stop it first.")
        reply = Message.objects.create(
            conversation=conversation, role=Role.ASSISTANT, status=Status.PENDING, reply_to=question,
            input_action=question.input_action, preface=current.preface if current else "",
            escalation_kind=current.escalation_kind if current else "",
            pack_version=conversation.pack_version, engine_profile=conversation.engine_profile,
            # the request's settings carry over (a partner's max_tokens, stop, response_format), but not
            # its seed: a regenerated answer is meant to differ
            sampling={k: v for k, v in ((current.sampling or {}) if current else {}).items() if k != "seed"},
        )
        if current is not None:
            Message.objects.filter(pk=current.pk).update(superseded_by=reply, updated_at=timezone.now())
        Outbox.objects.create(reply=reply, enqueued_at=timezone.now())
        reply_id = str(reply.id)
        transaction.on_commit(lambda: reply_enqueue(reply_id))
    return reply


def feedback_submit(*, message: Message, user: Any, rating: Any, reason: Any = "") -> Feedback:
    """Thumbs up/down on an assistant reply; submitting again replaces the earlier rating."""
    if rating not in Rating.values:
        raise ApplicationError(ErrorCode.VALIDATION, "Field 'rating' must be 'up' or 'down'.", field="rating")
    reason = _text(reason, "reason", limit=MAX_REASON_CHARS, required=False)
    if message.role != Role.ASSISTANT or message.status not in TERMINAL_STATUSES:
        raise ApplicationError(ErrorCode.CONFLICT, "Only a finished assistant reply can be rated.")
    feedback, _ = Feedback.objects.update_or_create(
        message=message, user=user,
        defaults={"rating": rating, "reason": reason, "tenant": message.conversation.tenant},
    )
    return feedback


@dataclass(frozen=True)
class Export:
    filename: str
    content_type: str
    body: str


def conversation_export(*, conversation: Conversation, actor: Any, fmt: Any) -> Export:
    """The customer's copy as Markdown or JSON (what they see: superseded replies are left out); audited."""
    if fmt not in EXPORT_FORMATS:
        raise ApplicationError(ErrorCode.VALIDATION, "Parameter 'format' must be 'md' or 'json'.", field="format")
    messages = [message_dict(m) for m in conversation_messages_visible(conversation)]
    stamp = timezone.now()
    name = f"verity-{conversation.domain}-{str(conversation.id)[:8]}-{stamp:%Y%m%d}"
    if fmt == "json":
        body = json.dumps({
            "id": str(conversation.id), "domain": conversation.domain, "title": conversation.title,
            "pack_version": conversation.pack_version.version, "exported_at": stamp.isoformat(),
            "messages": messages,
        }, indent=2, ensure_ascii=False)
        export = Export(f"{name}.json", "application/json", body)
    else:
        export = Export(f"{name}.md", "text/markdown; charset=utf-8", _markdown(conversation, messages, stamp))
    audit_append(event="conversation.exported", actor=actor, tenant=conversation.tenant,
                 subject=str(conversation.id), payload={"format": fmt, "messages": len(messages)},
                 pack_version=conversation.pack_version)
    return export


def _markdown(conversation: Conversation, messages: list[dict[str, Any]], stamp: Any) -> str:
    lines = [f"# {conversation.title or 'Conversation'}", "",
             f"Domain: {conversation.domain} · exported {stamp:%Y-%m-%d %H:%M} UTC", ""]
    for message in messages:
        who = "You" if message["role"] == "user" else ("Expert" if message.get("human") else "Verity")
        lines += [f"## {who} ({message['created_at'][:16].replace('T', ' ')})", "", message["content"] or "", ""]
        if message["status"] == Status.CANCELLED:
            lines += ["*(stopped)*", ""]
        if message.get("disclaimer"):
            lines += [f"> {message['disclaimer']}", ""]
    return "\n".join(lines).rstrip() + "\n"


def conversation_delete(*, conversation: Conversation, actor: Any) -> None:
    """Remove the customer's copy (see the module docstring for what stays); audited."""
    with transaction.atomic():
        updated = Conversation.objects.filter(pk=conversation.pk, deleted_at__isnull=True).update(
            deleted_at=timezone.now(), updated_at=timezone.now())
        if not updated:
            raise ApplicationError(ErrorCode.NOT_FOUND, "No such conversation.")
        audit_append(event="conversation.deleted", actor=actor, tenant=conversation.tenant,
                     subject=str(conversation.id), payload={"retained": "tenant retention rules apply"},
                     pack_version=conversation.pack_version)
    bus = stream_bus()
    for reply_id in Message.objects.filter(conversation=conversation, role=Role.ASSISTANT,
                                           status__in=(Status.PENDING, Status.STREAMING)).values_list("id", flat=True):
        bus.cancel_request(str(reply_id))  # nobody is left to read it


def conversation_rename(*, conversation: Conversation, title: Any) -> Conversation:
    conversation.title = _text(title, "title", limit=MAX_TITLE_CHARS, required=True)
    conversation.save(update_fields=["title", "updated_at"])
    return conversation


def handoff_request(*, conversation: Conversation, user: Any, reason: Any = "", kind: str = "human") -> HandoffRequest:
    """"Talk to a human": one open request per conversation lands in the experts' queue; audited."""
    reason = _text(reason, "reason", limit=MAX_REASON_CHARS, required=False)
    with transaction.atomic():
        Conversation.objects.select_for_update().filter(pk=conversation.pk).first()
        open_request = HandoffRequest.objects.filter(conversation=conversation, status=HandoffStatus.OPEN).first()
        if open_request is not None:
            return open_request
        handoff = HandoffRequest.objects.create(tenant=conversation.tenant, conversation=conversation,
                                                requested_by=user, reason=reason, kind=kind)
        audit_append(event="escalation.requested", actor=user, tenant=conversation.tenant,
                     subject=str(conversation.id), payload={"handoff": str(handoff.id), "kind": kind,
                                                            "reason": reason},
                     pack_version=conversation.pack_version)
        data = {"handoff_id": str(handoff.id), "status": handoff.status, "kind": kind}
        transaction.on_commit(lambda: stream_bus().publish(conversation_stream_key(conversation.id),
                                                           "handoff.requested", data))
    return handoff


def human_reply_post(*, conversation: Conversation, expert: Any, text: Any) -> Message:
    """An expert answers in the conversation: stored as a human message, audited, published live."""
    body = _text(text, "text", limit=settings.VERITY_MAX_MESSAGE_CHARS, required=True)
    name = expert.get_full_name() or expert.get_username()
    with transaction.atomic():
        message = Message.objects.create(
            conversation=conversation, role=Role.ASSISTANT, status=Status.COMPLETE, content=body,
            pack_version=conversation.pack_version, engine_profile=HUMAN_PROFILE,
            model_version=f"human:{expert.get_username()}"[:200], finish_reason="human",
            verdicts=[{"stage": "human", "rule": "expert_reply", "action": "allow", "score": 1.0,
                       "latency_ms": 0.0}],
            completed_at=timezone.now(),
        )
        HandoffRequest.objects.filter(conversation=conversation, status=HandoffStatus.OPEN).update(
            status=HandoffStatus.ANSWERED, answered_by=expert, answered_at=timezone.now(),
            updated_at=timezone.now())
        audit_append(event="review.human_reply", actor=expert, tenant=conversation.tenant, subject=str(message.id),
                     payload={"conversation": str(conversation.id), "content": body},
                     pack_version=conversation.pack_version)
        payload = {"message_id": str(message.id), "conversation_id": str(conversation.id), "content": body,
                   "author": "human", "name": name, "created_at": message.created_at.isoformat()}
        transaction.on_commit(lambda: stream_bus().publish(conversation_stream_key(conversation.id),
                                                           "human.message", payload))
    return message
