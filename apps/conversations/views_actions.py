"""Chat API for what a customer does besides sending a message, and the conversation's live stream.

Stop, regenerate, feedback, export, talk-to-a-human, and `GET /chat/api/conversations/<id>/events`: an
SSE stream of the conversation's own events (`human.message` from an expert, `handoff.requested`) that
an open chat page keeps subscribed. Views parse and authorise, then call one service (apps.conversations.actions).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from apps.conversations.actions import (
    conversation_export,
    feedback_submit,
    handoff_request,
    reply_cancel,
    reply_regenerate,
)
from apps.conversations.selectors import conversation_get_for_user, message_get_for_user, reply_get_for_user
from apps.conversations.streams import conversation_stream_key
from apps.conversations.views import _require_user, sse_endpoint, sse_relay
from apps.core.http import json_body


@require_http_methods(["POST"])
def reply_cancel_api(request: HttpRequest, reply_id: str) -> JsonResponse:
    reply = reply_cancel(reply=reply_get_for_user(user=_require_user(request), reply_id=reply_id))
    return JsonResponse({"reply_id": str(reply.id), "status": reply.status, "cancel_requested": True},
                        status=202)


@require_http_methods(["POST"])
def regenerate_api(request: HttpRequest, conversation_id: str) -> JsonResponse:
    conversation = conversation_get_for_user(user=_require_user(request), conversation_id=conversation_id)
    reply = reply_regenerate(conversation=conversation)
    reply_id = str(reply.id)
    return JsonResponse({"reply_id": reply_id, "message_id": str(reply.reply_to_id),
                         "events_url": f"/chat/api/replies/{reply_id}/events"}, status=202)


@require_http_methods(["POST"])
def feedback_api(request: HttpRequest, message_id: str) -> JsonResponse:
    user = _require_user(request)
    message = message_get_for_user(user=user, message_id=message_id)
    data = json_body(request)
    feedback = feedback_submit(message=message, user=user, rating=data.get("rating"), reason=data.get("reason"))
    return JsonResponse({"id": str(feedback.id), "message_id": str(message.id), "rating": feedback.rating,
                         "reason": feedback.reason}, status=201)


@require_GET
def export_api(request: HttpRequest, conversation_id: str) -> HttpResponse:
    user = _require_user(request)
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    export = conversation_export(conversation=conversation, actor=user, fmt=request.GET.get("format", "md"))
    response = HttpResponse(export.body.encode(), content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["POST"])
def handoff_api(request: HttpRequest, conversation_id: str) -> JsonResponse:
    user = _require_user(request)
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    reason = json_body(request).get("reason", "") if request.body.strip() else ""
    handoff = handoff_request(conversation=conversation, user=user, reason=reason)
    return JsonResponse({"id": str(handoff.id), "status": handoff.status, "kind": handoff.kind,
                         "created_at": handoff.created_at.isoformat()}, status=201)


async def conversation_events(request: HttpRequest, conversation_id: str) -> HttpResponse:
    """SSE of a conversation's own events, resumable with Last-Event-ID (header or `?last_event_id=`)."""
    return await sse_endpoint(
        request, lambda conversation, after: sse_relay(conversation_stream_key(conversation.id), after),
        lambda user: conversation_get_for_user(user=user, conversation_id=conversation_id))
