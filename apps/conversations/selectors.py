"""Conversation reads for the front doors: a user's conversations, one conversation, one reply."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from apps.conversations.models import Conversation, Message, Role
from apps.core.errors import ApplicationError, ErrorCode


def conversations_for_user(*, user: Any) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user, deleted_at__isnull=True).order_by("-created_at")


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


def conversation_summary(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id), "domain": conversation.domain, "title": conversation.title,
        "pack_version": conversation.pack_version.version, "engine_profile": conversation.engine_profile,
        "created_at": conversation.created_at.isoformat(),
    }


def message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": str(message.id), "role": message.role, "content": message.content,
        "reasoning": message.reasoning, "status": message.status,
        "created_at": message.created_at.isoformat(), "disclaimer": message.disclaimer,
        "finish_reason": message.finish_reason, "error": message.error or None,
    }


def conversation_detail(conversation: Conversation) -> dict[str, Any]:
    messages = conversation.messages.order_by("created_at")
    return {**conversation_summary(conversation), "messages": [message_dict(m) for m in messages]}
