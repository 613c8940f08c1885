"""Review queue: find what the pipeline flagged, and let experts assign, annotate, resolve and reply.

Items are derived from stored replies (never from the stream): a reply whose input was blocked or
escalated (a pack's `human_request` rule makes it a "talk to a human" item), whose output was blocked (`finish_reason == "content_filter"`) or retracted becomes one
item per (message, reason). `review_queue_sync` is idempotent and runs when the queue is opened.
Thumbs-down feedback and open "talk to a human" requests (apps.conversations' Feedback and
HandoffRequest, once their tables exist) become items too.
A human reply is stored as an assistant message marked `engine_profile="human"` and published on the
conversation's stream key `conversation:<id>` as a `human.message` event for an open chat page.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.audit.services import audit_append
from apps.console.models import ReviewItem, ReviewNote, ReviewReason, ReviewStatus
from apps.conversations import models as conversation_models
from apps.conversations.actions import human_reply_post
from apps.conversations.models import Message, Role, Status
from apps.core.errors import ApplicationError, ErrorCode

HUMAN_PROFILE = "human"
MAX_NOTE_CHARS = 8000


def message_flags(message: Message) -> list[str]:
    """Why a stored assistant reply needs a human look (empty when it does not)."""
    reasons = []
    if message.input_action == "block" or message.finish_reason == "content_filter":
        reasons.append(ReviewReason.BLOCKED)
    if message.input_action == "escalate":
        # A pack's `*.human_request` rule escalates to its `human` text: the customer asked for a person.
        asked = any(str(v.get("rule", "")).endswith("human_request") and v.get("action") == "escalate"
                    for v in message.verdicts or [] if isinstance(v, dict))
        reasons.append(ReviewReason.HUMAN if asked else ReviewReason.ESCALATED)
    if any(v.get("action") == "retract" or v.get("rule") == "retract" for v in message.verdicts or []
           if isinstance(v, dict)):
        reasons.append(ReviewReason.RETRACTED)
    return reasons


def review_queue_sync(*, tenant: Any) -> int:
    """Create items for flagged replies of `tenant` that have none yet; returns how many were added."""
    flagged = (Message.objects.filter(conversation__tenant=tenant, role=Role.ASSISTANT, status=Status.COMPLETE)
               .filter(Q(input_action__in=("block", "escalate")) | Q(finish_reason="content_filter")
                       | Q(verdicts__icontains="retract"))
               .exclude(engine_profile=HUMAN_PROFILE).select_related("conversation"))
    known = set(ReviewItem.objects.filter(tenant=tenant).values_list("message_id", "reason"))
    added = 0
    for message in flagged:
        for reason in message_flags(message):
            if (message.id, reason) in known:
                continue
            try:
                with transaction.atomic():
                    ReviewItem.objects.create(tenant=tenant, conversation=message.conversation,
                                              message=message, reason=reason)
                added += 1
            except IntegrityError:  # another reviewer's sync got there first
                continue
    return added + _customer_signals_sync(tenant)


def _table_ready(model: Any) -> bool:
    # The customer's Feedback and HandoffRequest models arrive in apps.conversations on their own
    # schedule; until their table exists the queue simply has no such items.
    return model is not None and model._meta.db_table in connection.introspection.table_names()


def _customer_signals_sync(tenant: Any) -> int:
    """Items for thumbs-down feedback and open "talk to a human" requests of `tenant`."""
    feedback_model = getattr(conversation_models, "Feedback", None)
    handoff_model = getattr(conversation_models, "HandoffRequest", None)
    added = 0
    if _table_ready(feedback_model):
        known = set(ReviewItem.objects.filter(tenant=tenant, reason=ReviewReason.FEEDBACK)
                    .values_list("message_id", flat=True))
        for feedback in feedback_model.objects.filter(tenant=tenant, rating="down").select_related("message"):
            if feedback.message_id not in known:
                known.add(feedback.message_id)
                added += _item_create(tenant, feedback.message.conversation_id, feedback.message_id,
                                      ReviewReason.FEEDBACK)
    if _table_ready(handoff_model):
        known = set(ReviewItem.objects.filter(tenant=tenant, reason=ReviewReason.HUMAN, message__isnull=True)
                    .values_list("conversation_id", flat=True))
        for handoff in handoff_model.objects.filter(tenant=tenant, status="open"):
            if handoff.conversation_id not in known:
                known.add(handoff.conversation_id)
                added += _item_create(tenant, handoff.conversation_id, None, ReviewReason.HUMAN)
    return added


def _item_create(tenant: Any, conversation_id: Any, message_id: Any, reason: str) -> int:
    try:
        with transaction.atomic():
            ReviewItem.objects.create(tenant=tenant, conversation_id=conversation_id, message_id=message_id,
                                      reason=reason)
        return 1
    except IntegrityError:
        return 0


def review_items(*, tenant: Any, status: str = "", reason: str = "", domain: str = "",
                 assignee: Any = None) -> QuerySet[ReviewItem]:
    items = ReviewItem.objects.filter(tenant=tenant).select_related("conversation", "message", "assignee")
    if status:
        items = items.filter(status=status)
    if reason:
        items = items.filter(reason=reason)
    if domain:
        items = items.filter(conversation__domain=domain)
    if assignee is not None:
        items = items.filter(assignee=assignee)
    return items.order_by("-created_at")


def review_item_get(*, tenant: Any, item_id: Any) -> ReviewItem:
    """One item of `tenant`; another tenant's item is NOT_FOUND (its existence is not revealed)."""
    try:
        return ReviewItem.objects.select_related("conversation").get(pk=item_id, tenant=tenant)
    except (ReviewItem.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise ApplicationError(ErrorCode.NOT_FOUND, f"Review item {item_id} does not exist.") from exc


def _text(text: Any, field: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ApplicationError(ErrorCode.VALIDATION, f"Field {field!r} must not be empty.", field=field)
    if len(text) > MAX_NOTE_CHARS:
        raise ApplicationError(ErrorCode.MESSAGE_TOO_LONG, f"Field {field!r} is longer than {MAX_NOTE_CHARS} "
                               "characters.", field=field)
    return text.strip()


def _audit(event: str, item: ReviewItem, actor: Any, **payload: Any) -> None:
    audit_append(event=event, actor=actor, tenant=item.tenant, subject=str(item.conversation_id),
                 payload={"item": str(item.id), "reason": item.reason, **payload})


@transaction.atomic
def review_item_assign(*, item: ReviewItem, actor: Any, assignee: Any) -> ReviewItem:
    if item.status == ReviewStatus.RESOLVED:
        raise ApplicationError(ErrorCode.CONFLICT, "This item is resolved already.", field="status")
    item.assignee, item.status = assignee, ReviewStatus.ASSIGNED
    item.save(update_fields=["assignee", "status", "updated_at"])
    _audit("review.assigned", item, actor, assignee=getattr(assignee, "username", ""))
    return item


@transaction.atomic
def review_item_annotate(*, item: ReviewItem, actor: Any, text: Any) -> ReviewNote:
    note = ReviewNote.objects.create(item=item, author=actor, kind="note", text=_text(text, "text"))
    _audit("review.annotated", item, actor, note=str(note.id))
    return note


@transaction.atomic
def review_item_resolve(*, item: ReviewItem, actor: Any, text: Any = "") -> ReviewItem:
    if item.status == ReviewStatus.RESOLVED:
        raise ApplicationError(ErrorCode.CONFLICT, "This item is resolved already.", field="status")
    if isinstance(text, str) and text.strip():
        ReviewNote.objects.create(item=item, author=actor, kind="note", text=_text(text, "text"))
    item.status, item.resolved_by, item.resolved_at = ReviewStatus.RESOLVED, actor, timezone.now()
    item.save(update_fields=["status", "resolved_by", "resolved_at", "updated_at"])
    _audit("review.resolved", item, actor)
    return item


def review_human_reply(*, item: ReviewItem, actor: Any, text: Any) -> Message:
    """Answer the customer inside the conversation as a human.

    The conversations service stores, audits and publishes the message (and closes any open
    "talk to a human" request); the console only adds the reply to the item's review notes."""
    with transaction.atomic():
        message = human_reply_post(conversation=item.conversation, expert=actor, text=text)
        ReviewNote.objects.create(item=item, author=actor, kind="reply", text=message.content)
    return message
