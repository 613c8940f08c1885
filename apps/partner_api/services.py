"""Partner API writes: idempotent requests, conversations, feedback, escalations, and the bookkeeping
after a completion (usage ledger, the limiter's token correction).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.apikeys.models import ApiKey
from apps.apikeys.services import usage_record
from apps.audit.services import audit_append
from apps.conversations.models import Conversation, Message, Role
from apps.conversations.services import conversation_create
from apps.partner_api.errors import PartnerApiError, invalid
from apps.partner_api.models import Escalation, Feedback, IdempotencyRecord, PartnerConversation
from apps.partner_api.ratelimit import limiter
from apps.partner_api.selectors import message_get, model_resolve, partner_conversation_get

MAX_IDEMPOTENCY_KEY = 255


def request_digest(*, path: str, body: bytes) -> str:
    return hashlib.sha256(path.encode() + b"\n" + body).hexdigest()


@dataclass(frozen=True)
class IdempotencyClaim:
    record: IdempotencyRecord
    replay: bool  # True: an earlier request with this key exists; serve its result instead


def idempotency_claim(*, api_key: ApiKey, key: str, path: str, body: bytes) -> IdempotencyClaim:
    """Claim `key` for this request, or find the earlier request that claimed it.

    The unique constraint decides races: of two concurrent first attempts exactly one inserts; the
    other sees the row and follows it. A key reused for a different request is a 400.
    """
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise invalid(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters.", param="Idempotency-Key")
    digest = request_digest(path=path, body=body)
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(api_key=api_key, key=key, request_digest=digest, path=path)
        return IdempotencyClaim(record=record, replay=False)
    except IntegrityError:
        record = IdempotencyRecord.objects.get(api_key=api_key, key=key)
    if record.request_digest != digest:
        raise PartnerApiError(400, "idempotency_key_reused", "This Idempotency-Key was used with a different "
                              "request; use a new key for a new request.", param="Idempotency-Key")
    return IdempotencyClaim(record=record, replay=True)


def idempotency_attach_reply(*, record: IdempotencyRecord, reply_id: Any, model: str) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(reply_id=reply_id, model=model)
    record.reply_id, record.model = reply_id, model


def idempotency_complete(*, record: IdempotencyRecord, status: int, body: Any) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_status=status, response_body=json.loads(json.dumps(body)), completed_at=timezone.now())


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """A request that failed before producing anything frees its key so that a retry can run."""
    IdempotencyRecord.objects.filter(pk=record.pk, reply_id__isnull=True, completed_at__isnull=True).delete()


def completion_account(*, api_key: ApiKey, reply: Message, model: str, reserved_tokens: int) -> None:
    """After a reply: one ledger row per reply, and the limiter charged the real instead of the estimate."""
    usage = reply.usage or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    usage_record(api_key=api_key, reply_id=reply.id, model=model, prompt_tokens=prompt,
                 completion_tokens=completion)
    if reserved_tokens:
        limiter().adjust_tokens(str(api_key.pk), prompt + completion - reserved_tokens)


def partner_conversation_create(*, api_key: ApiKey, model: str, title: str = "",
                                metadata: dict[str, Any] | None = None) -> Conversation:
    domain, profile = model_resolve(model=model, api_key=api_key)
    with transaction.atomic():
        conversation = conversation_create(tenant=api_key.tenant, user=None, domain=domain, profile=profile,
                                           title=title)
        PartnerConversation.objects.create(conversation=conversation, tenant=api_key.tenant,
                                           partner_app=api_key.partner_app, api_key=api_key,
                                           metadata=metadata or {})
    return conversation


def partner_conversation_delete(*, api_key: ApiKey, conversation_id: Any) -> Conversation:
    """The partner's copy disappears (404 from now on); the regulated record and its audit trail stay."""
    link = partner_conversation_get(api_key=api_key, conversation_id=conversation_id)
    conversation = link.conversation
    with transaction.atomic():
        conversation.deleted_at = timezone.now()
        conversation.save(update_fields=["deleted_at", "updated_at"])
        audit_append(event="conversation.deleted", actor=f"apikey:{api_key.prefix}", tenant=api_key.tenant,
                     subject=str(conversation.id), payload={"conversation": str(conversation.id),
                                                            "deleted_at": conversation.deleted_at})
    return conversation


def feedback_create(*, api_key: ApiKey, conversation_id: Any, message_id: Any, rating: int,
                    comment: str = "") -> Feedback:
    message = message_get(api_key=api_key, conversation_id=conversation_id, message_id=message_id)
    if message.role != Role.ASSISTANT:
        raise invalid("Feedback is given on assistant messages only.", param="message_id")
    if rating not in (-1, 1):
        raise invalid("rating must be 1 (helpful) or -1 (not helpful).", param="rating")
    return Feedback.objects.create(message=message, api_key=api_key, rating=rating, comment=comment.strip())


def escalation_create(*, api_key: ApiKey, conversation_id: Any, reason: str) -> Escalation:
    """Ask for human review of a conversation; audited, and visible to the console's review queue."""
    reason = (reason or "").strip()
    if not reason:
        raise invalid("A reason is required.", param="reason")
    link = partner_conversation_get(api_key=api_key, conversation_id=conversation_id)
    with transaction.atomic():
        escalation = Escalation.objects.create(conversation=link.conversation, api_key=api_key, reason=reason)
        audit_append(event="escalation.requested", actor=f"apikey:{api_key.prefix}", tenant=api_key.tenant,
                     subject=str(link.conversation.id), payload={"escalation": str(escalation.id),
                                                                 "reason": reason})
    return escalation
