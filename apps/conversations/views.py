"""Chat front door: the page, its JSON API and the SSE event stream (contract in docs/CONTRACTS.md).

Views parse and authorise, then call one service or selector; no business logic lives here. Errors
are ApplicationError rendered as `{"error": {"code", "message", "field"?}}`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.selectors import user_tenant_get
from apps.conversations.actions import conversation_delete, conversation_rename
from apps.conversations.models import TERMINAL_STATUSES, Status
from apps.conversations.selectors import (
    context_gauge,
    conversation_detail,
    conversation_get_for_user,
    conversation_summary,
    conversations_for_user,
    reply_get_for_user,
)
from apps.conversations.services import conversation_create, turn_submit
from apps.conversations.streams import TERMINAL_EVENTS, event_id_check, stream_bus
from apps.core.errors import ApplicationError, ErrorCode
from apps.core.http import error_response, json_body, str_field
from apps.prompt_packs.selectors import domains_list


def _require_user(request: HttpRequest) -> Any:
    if not request.user.is_authenticated:
        raise ApplicationError(ErrorCode.AUTHENTICATION_REQUIRED, "Sign in first.")
    return request.user


@login_required
@require_GET
def chat_page(request: HttpRequest) -> HttpResponse:
    conversations = [conversation_summary(c) for c in conversations_for_user(user=request.user)[:50]]
    return render(request, "chat/index.html", {"domains": domains_list(), "conversations": conversations})


@require_http_methods(["GET", "POST"])
def conversations_api(request: HttpRequest) -> JsonResponse:
    user = _require_user(request)
    if request.method == "GET":
        found = conversations_for_user(user=user, q=request.GET.get("q"))
        return JsonResponse({"conversations": [conversation_summary(c) for c in found]})
    data = json_body(request)
    conversation = conversation_create(
        tenant=user_tenant_get(user=user), user=user, domain=str_field(data, "domain"),
        profile=str_field(data, "profile", required=False) or "r1",
    )
    return JsonResponse(conversation_summary(conversation), status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
def conversation_api(request: HttpRequest, conversation_id: str) -> HttpResponse:
    user = _require_user(request)
    conversation = conversation_get_for_user(user=user, conversation_id=conversation_id)
    if request.method == "PATCH":
        conversation = conversation_rename(conversation=conversation, title=json_body(request).get("title"))
    elif request.method == "DELETE":
        conversation_delete(conversation=conversation, actor=user)
        return HttpResponse(status=204)
    return JsonResponse(conversation_detail(conversation))


@require_http_methods(["POST"])
def messages_api(request: HttpRequest, conversation_id: str) -> JsonResponse:
    conversation = conversation_get_for_user(user=_require_user(request), conversation_id=conversation_id)
    data = json_body(request)
    submitted = turn_submit(conversation=conversation, text=str_field(data, "text"))
    reply_id = str(submitted.reply.id)
    return JsonResponse(
        {"message_id": str(submitted.user_message.id), "reply_id": reply_id,
         "events_url": f"/chat/api/replies/{reply_id}/events"},
        status=202,
    )


def _frame(event_id: str, event: str, data: dict[str, Any]) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _done_from_record(reply: Any) -> tuple[str, dict[str, Any]]:
    """A finished reply whose stream expired is replayed from the stored message."""
    if reply.status == Status.FAILED:
        return "error", dict(reply.error or {"code": ErrorCode.INTERNAL.value, "message": "Generation failed."})
    return "done", {"message_id": str(reply.id), "content": reply.content, "reasoning": reply.reasoning,
                    "finish_reason": reply.finish_reason, "usage": reply.usage, "disclaimer": reply.disclaimer,
                    "context": context_gauge(reply.conversation)}


async def sse_relay(key: str, after: str | None, *,
                    on_idle: Callable[[], Awaitable[tuple[str, dict] | None]] | None = None,
                    ) -> AsyncIterator[bytes]:
    """Relay a stream-bus key as SSE frames, with heartbeats so proxies keep the connection open.

    Ends after a terminal event (`done`/`error`), or when `on_idle` (asked whenever no event came)
    returns a final `(event, data)` rebuilt from the stored record; without `on_idle` it runs until
    the client goes away (the conversation stream)."""
    bus = stream_bus()
    heartbeat_s = settings.VERITY_SSE_HEARTBEAT_S
    last_sent = time.monotonic()
    yield b"retry: 2000\n\n"
    while True:
        events = await bus.aread(key, after, 1000)
        if events:
            # Everything one read returned leaves as one chunk: one ASGI send (and one TCP write) per
            # read instead of per event, which is what the relay costs under many concurrent streams.
            frames, ended = [], False
            for event_id, event, data in events:
                after = event_id
                frames.append(_frame(event_id, event, data))
                if event in TERMINAL_EVENTS:
                    ended = True
                    break
            yield b"".join(frames)
            if ended:
                return
            last_sent = time.monotonic()
            continue
        final = await on_idle() if on_idle is not None else None
        if final is not None:
            yield _frame("0-1", *final)
            return
        if time.monotonic() - last_sent >= heartbeat_s:
            yield b": heartbeat\n\n"
            last_sent = time.monotonic()


def _event_stream(reply_id: str, after: str | None) -> AsyncIterator[bytes]:
    async def finished_record() -> tuple[str, dict] | None:
        # The worker may have finished while nobody listened (or its events expired): answer from the DB.
        reply = await sync_to_async(_reply_reload)(reply_id)
        if reply is not None and reply.status in TERMINAL_STATUSES:
            return _done_from_record(reply)
        return None

    return sse_relay(reply_id, after, on_idle=finished_record)


def _reply_reload(reply_id: str) -> Any:
    from apps.conversations.models import Message

    return Message.objects.filter(pk=reply_id).select_related("conversation").first()


async def sse_endpoint(request: HttpRequest, open_stream: Callable[[Any, str | None], AsyncIterator[bytes]],
                       authorize: Callable[[Any], Any]) -> HttpResponse:
    """The shared front of the SSE endpoints: GET only, a signed-in user, `authorize(user)` (sync, raises
    ApplicationError, e.g. NOT_FOUND for another customer's object) and a valid Last-Event-ID (header or
    `?last_event_id=`); then `open_stream(authorized, after)` relayed with the no-buffering headers."""
    if request.method != "GET":
        return error_response(ApplicationError(ErrorCode.VALIDATION, "Use GET.", status=405))
    try:
        user = await request.auser()
        if not user.is_authenticated:
            raise ApplicationError(ErrorCode.AUTHENTICATION_REQUIRED, "Sign in first.")
        authorized = await sync_to_async(authorize)(user)
        after = event_id_check(request.headers.get("Last-Event-ID") or request.GET.get("last_event_id"))
    except ApplicationError as exc:
        return error_response(exc)
    response = StreamingHttpResponse(open_stream(authorized, after), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


async def reply_events(request: HttpRequest, reply_id: str) -> HttpResponse:
    """SSE relay of one reply's events, resumable with Last-Event-ID (header or `?last_event_id=`)."""
    return await sse_endpoint(
        request, lambda _reply, after: _event_stream(str(reply_id), after),
        lambda user: reply_get_for_user(user=user, reply_id=reply_id))
