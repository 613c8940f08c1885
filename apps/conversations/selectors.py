"""Conversation reads for the front doors: a user's conversations (searchable), one conversation, one reply.

What the customer sees leaves out deleted conversations and replies replaced by regenerate.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from apps.conversations.models import Conversation, Message, Role
from apps.core.errors import ApplicationError, ErrorCode

MAX_QUERY_CHARS = 200


def conversations_for_user(*, user: Any, q: str | None = None) -> QuerySet[Conversation]:
    """The user's conversations, newest first; `q` matches the title or any visible message text."""
    conversations = Conversation.objects.filter(user=user, deleted_at__isnull=True)
    query = (q or "").strip()
    if query:
        if len(query) > MAX_QUERY_CHARS:
            raise ApplicationError(ErrorCode.VALIDATION, f"Search text is longer than {MAX_QUERY_CHARS} characters.",
                                   field="q")
        matching = Message.objects.filter(content__icontains=query, superseded_by__isnull=True)
        conversations = conversations.filter(Q(title__icontains=query)
                                             | Q(pk__in=matching.values("conversation_id")))
    return conversations.order_by("-created_at")


def message_get_for_user(*, user: Any, message_id: Any) -> Message:
    try:
        return Message.objects.select_related("conversation", "conversation__tenant").get(
            pk=message_id, conversation__user=user, conversation__deleted_at__isnull=True)
    except (Message.DoesNotExist, ValidationError, ValueError, TypeError):
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such message.") from None


def conversation_messages_visible(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.filter(superseded_by__isnull=True).order_by("created_at")


def conversation_get_for_user(*, user: Any, conversation_id: Any) -> Conversation:
    """The user's own conversation; anyone else's (or a malformed id) is a 404, never a 403."""
    try:
        return conversations_for_user(user=user).select_related("pack_version", "tenant").get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValidationError, ValueError, TypeError):
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such conversation.") from None


def reply_get_for_user(*, user: Any, reply_id: Any) -> Message:
    try:
        return Message.objects.select_related("conversation").get(
            pk=reply_id, role=Role.ASSISTANT, conversation__user=user, conversation__deleted_at__isnull=True)
    except (Message.DoesNotExist, ValidationError, ValueError, TypeError):
        raise ApplicationError(ErrorCode.NOT_FOUND, "No such reply.") from None


def context_gauge(conversation: Conversation) -> dict[str, Any]:
    """Tokens the latest prompt used out of its budget (0/0 before the first reply)."""
    budget, tokens = conversation.context_budget, conversation.context_tokens
    return {"tokens": tokens, "budget": budget, "ratio": round(tokens / budget, 4) if budget else 0.0}


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id), "domain": conversation.domain, "title": conversation.title,
        "pack_version": conversation.pack_version.version, "engine_profile": conversation.engine_profile,
        "created_at": conversation.created_at.isoformat(), "context": context_gauge(conversation),
    }


def message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id), "role": message.role, "content": message.content,
        "reasoning": message.reasoning, "status": message.status,
        "created_at": message.created_at.isoformat(), "disclaimer": message.disclaimer,
        "finish_reason": message.finish_reason, "error": message.error or None,
        "human": message.engine_profile == "human",
        "escalation": ({"kind": message.escalation_kind, "text": message.preface}
                       if message.input_action == "escalate" and message.role == Role.ASSISTANT else None),
    }


def conversation_detail(conversation: Conversation) -> dict[str, Any]:
    messages = conversation_messages_visible(conversation)
    return {**conversation_summary(conversation), "messages": [message_dict(m) for m in messages],
            "events_url": f"/chat/api/conversations/{conversation.id}/events"}
