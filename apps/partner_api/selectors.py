"""Partner API reads: the model catalogue a key may use, and a key's conversations with cursor pages.

Isolation: every lookup is filtered by the key's tenant AND partner app; anything else (another
tenant's id, a web customer's conversation, a malformed id) is the same 404.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from apps.apikeys.models import ApiKey
from apps.conversations.models import Conversation, Message
from apps.core.errors import ApplicationError
from apps.partner_api.errors import PartnerApiError, invalid, not_found
from apps.partner_api.models import PartnerConversation
from apps.prompt_packs.selectors import domains_list, pack_published_get

PROFILES = ("r1", "zero")
DEFAULT_PROFILE = "r1"


def models_list(*, api_key: ApiKey) -> list[dict[str, Any]]:
    """`<domain>` (the R1 engine), `<domain>-r1` and `<domain>-zero` for each allowed published domain."""
    out = []
    for domain in domains_list():
        if not api_key.allows_domain(domain["slug"]):
            continue
        for suffix in ("", *(f"-{p}" for p in PROFILES)):
            profile = suffix[1:] or DEFAULT_PROFILE
            out.append({"id": f"{domain['slug']}{suffix}", "object": "model", "created": 0, "owned_by": "verity",
                        "domain": domain["slug"], "profile": profile, "title": domain["title"],
                        "description": domain["description"]})
    return out


def model_get(*, api_key: ApiKey, model_id: str) -> dict[str, Any]:
    for model in models_list(api_key=api_key):
        if model["id"] == model_id:
            return model
    raise _model_not_found(model_id)


def _model_not_found(model_id: Any) -> PartnerApiError:
    return PartnerApiError(404, "model_not_found", f"The model {str(model_id)[:64]!r} does not exist or this key "
                           "may not use it; GET /v1/models lists the models available to it.", param="model")


def model_resolve(*, model: str, api_key: ApiKey, published_check: bool = True) -> tuple[str, str]:
    """`finance` / `finance-r1` / `finance-zero` -> (domain, profile) if this key may use it.

    `published_check=False` skips the database: for callers that fetch the domain's published pack
    next anyway (`conversation_create` raises UNKNOWN_DOMAIN, which /v1 renders as 404 model_not_found).
    """
    domain, _, profile = model.partition("-")
    profile = profile or DEFAULT_PROFILE
    if profile not in PROFILES or not api_key.allows_domain(domain):
        raise _model_not_found(model)
    if published_check:
        try:
            pack_published_get(domain=domain)
        except ApplicationError:
            raise _model_not_found(model) from None
    return domain, profile


def _conversations(api_key: ApiKey) -> QuerySet[PartnerConversation]:
    return PartnerConversation.objects.filter(tenant_id=api_key.tenant_id, partner_app_id=api_key.partner_app_id,
                                              conversation__deleted_at__isnull=True)


def partner_conversation_get(*, api_key: ApiKey, conversation_id: Any) -> PartnerConversation:
    try:
        pk = uuid.UUID(str(conversation_id))
    except (ValueError, TypeError):
        raise not_found("conversation") from None
    link = (_conversations(api_key).select_related("conversation", "conversation__pack_version")
            .filter(conversation_id=pk).first())
    if link is None:
        raise not_found("conversation")
    return link


@dataclass(frozen=True)
class Page:
    items: list[Any]
    has_more: bool
    next_cursor: str | None


def _cursor_encode(created_at: datetime, pk: Any) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{pk}".encode()).decode().rstrip("=")


def _cursor_decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|", 1)
        return datetime.fromisoformat(stamp), uuid.UUID(pk)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise invalid("The cursor is not one this API returned.", param="after") from None


def conversations_page(*, api_key: ApiKey, limit: int = 20, after: str | None = None) -> Page:
    """Newest first; `after` is the `next_cursor` of the previous page (stable under concurrent inserts)."""
    conversations = Conversation.objects.filter(
        partner_link__in=_conversations(api_key)).select_related("pack_version").order_by("-created_at", "-id")
    if after:
        stamp, pk = _cursor_decode(after)
        conversations = conversations.filter(Q(created_at__lt=stamp) | Q(created_at=stamp, id__lt=pk))
    rows = list(conversations[: limit + 1])
    items, has_more = rows[:limit], len(rows) > limit
    cursor = _cursor_encode(items[-1].created_at, items[-1].id) if has_more else None
    return Page(items=items, has_more=has_more, next_cursor=cursor)


def conversation_messages(*, conversation: Conversation) -> list[Message]:
    return list(conversation.messages.select_related("pack_version").order_by("created_at"))


def message_get(*, api_key: ApiKey, conversation_id: Any, message_id: Any) -> Message:
    link = partner_conversation_get(api_key=api_key, conversation_id=conversation_id)
    try:
        return link.conversation.messages.get(pk=uuid.UUID(str(message_id)))
    except (Message.DoesNotExist, ValueError, TypeError):
        raise not_found("message") from None


def conversation_dict(conversation: Conversation) -> dict[str, Any]:
    return {"id": str(conversation.id), "object": "conversation", "created": int(conversation.created_at.timestamp()),
            "model": f"{conversation.domain}-{conversation.engine_profile}", "domain": conversation.domain,
            "title": conversation.title, "pack_version": conversation.pack_version.version}


def message_dict(message: Message) -> dict[str, Any]:
    return {"id": str(message.id), "object": "conversation.message", "role": message.role,
            "created": int(message.created_at.timestamp()), "status": message.status, "content": message.content,
            "reasoning_content": message.reasoning or None, "disclaimer": message.disclaimer or None,
            "finish_reason": message.finish_reason or None}
