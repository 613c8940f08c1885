"""Following a submitted reply to its end for /v1: wait for it, or relay it as `chat.completion.chunk`
SSE frames, and shape the result the way OpenAI (and DeepSeek's reasoning models) do.

A client that disconnects mid-stream does not stop the generation: the turn runs to its end (it is a
stored, audited record the partner can still read through /v1/conversations), and the tokens it
generated are billed to the key's usage ledger once it finishes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import connections

from apps.conversations.models import Message, Status
from apps.conversations.services import structured_output
from apps.conversations.streams import TERMINAL_EVENTS, stream_bus
from apps.partner_api.errors import PartnerApiError

logger = logging.getLogger(__name__)

FINISH_REASONS = {"stop", "length", "content_filter"}


def _timeout_s() -> float:
    return float(getattr(settings, "VERITY_PARTNER_TIMEOUT_S", 300))


def _db_release() -> None:
    """Give this thread's database connection back (to the pool) before blocking on the stream: a
    request waiting for its reply must not hold one of the pool's few connections while it waits.
    Inside a transaction (a test's, or a caller's atomic block) the connection stays."""
    connection = connections["default"]
    if not connection.in_atomic_block:
        connection.close()


def reply_wait(*, reply_id: Any) -> Message:
    """Block until the reply is finished (its `done`/`error` event), then return the stored message."""
    bus, after = stream_bus(), None
    deadline = time.monotonic() + _timeout_s()
    while time.monotonic() < deadline:
        _db_release()
        events = bus.read(str(reply_id), after, 1000)
        for event_id, event, _data in events:
            after = event_id
            if event in TERMINAL_EVENTS:
                return _reply_final(reply_id)
        if not events:  # the stream may have expired: the database is the record
            reply = Message.objects.get(pk=reply_id)
            if reply.status in (Status.COMPLETE, Status.FAILED):
                return _reply_final(reply_id)
    raise PartnerApiError(504, "timeout", "The reply did not finish in time; retry with the same "
                          "Idempotency-Key to pick it up.")


def _finished(reply_id: Any) -> Message:
    """The stored reply with what a response body reads: its own row and its pack's version number.
    The pack's content (tens of kB of JSON) and the conversation row are not needed for a body."""
    return Message.objects.select_related("pack_version").defer("pack_version__data").get(pk=reply_id)


def _reply_final(reply_id: Any) -> Message:
    reply = _finished(reply_id)
    if reply.status == Status.FAILED:
        raise reply_error(reply.error or {})
    return reply


def _expired_stream_replay_ready(reply_id: Any) -> bool:
    return Message.objects.filter(pk=reply_id, status__in=(Status.COMPLETE, Status.FAILED)).exists()


def _reply_final_or_none(reply_id: Any) -> Message | None:
    reply = _finished(reply_id)
    return reply if reply.status == Status.COMPLETE else None


def reply_error(error: dict[str, Any]) -> PartnerApiError:
    code, message = error.get("code", "internal_error"), error.get("message", "Generation failed.")
    status = {"engine_unavailable": 503, "context_length_exceeded": 400, "validation_error": 400}.get(code, 500)
    if code == "validation_error":
        # The engine refused the sampling at generation time (apps.inference names response_format first).
        param = "response_format" if message.startswith("response_format") else None
        return PartnerApiError(400, "invalid_request_error", message, param=param)
    return PartnerApiError(status, code, message)


def finish_reason(reply: Message) -> str:
    if reply.input_action == "block" or reply.finish_reason == "content_filter":
        return "content_filter"
    return reply.finish_reason if reply.finish_reason in FINISH_REASONS else "stop"


def usage_of(reply: Message) -> dict[str, int]:
    usage = reply.usage or {}
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def verity_extra(reply: Message) -> dict[str, Any]:
    """Verity's own account of the turn: the safety verdicts, escalation, disclaimer and record ids."""
    return {
        "conversation_id": str(reply.conversation_id), "message_id": str(reply.id),
        "input_action": reply.input_action, "verdicts": reply.verdicts or [],
        "disclaimer": reply.disclaimer or None, "pack_version": reply.pack_version.version,
    }


def completion_id(reply_id: Any) -> str:
    return f"chatcmpl-{str(reply_id).replace('-', '')}"


def _visible_content(reply: Message) -> str:
    """The content as the stream shows it: the disclaimer appended, except for JSON-constrained replies
    (their content must parse; the disclaimer is in `verity.disclaimer`)."""
    if not reply.disclaimer or structured_output(reply.sampling):
        return reply.content
    return f"{reply.content}\n\n{reply.disclaimer}"


def completion_body(*, reply: Message, model: str) -> dict[str, Any]:
    """The non-streaming response; `content` carries the disclaimer exactly as the stream shows it."""
    content = _visible_content(reply)
    return {
        "id": completion_id(reply.id), "object": "chat.completion", "created": int(reply.created_at.timestamp()),
        "model": model, "system_fingerprint": reply.model_version or None,
        "choices": [{
            "index": 0, "logprobs": None, "finish_reason": finish_reason(reply),
            "message": {"role": "assistant", "content": content, "reasoning_content": reply.reasoning or None,
                        "refusal": None},
        }],
        "usage": usage_of(reply),
        "verity": verity_extra(reply),
    }


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def _settle_when_done(reply_id: Any, on_finish: Any) -> None:
    """The client left mid-stream: the generation runs to its end (the turn is a stored, audited record
    the partner can still read), and its tokens are billed once it has finished."""

    def run() -> None:
        try:
            on_finish(reply_wait(reply_id=reply_id))
        except PartnerApiError as exc:  # a failed reply has nothing to bill
            logger.info("reply %s of a disconnected stream ended with %s", reply_id, exc.code)
        except Exception:
            logger.exception("billing the disconnected stream of reply %s failed", reply_id)
        finally:
            connections.close_all()

    logger.info("client left the stream of reply %s; it is billed when the reply finishes", reply_id)
    threading.Thread(target=run, name=f"verity-settle-{reply_id}", daemon=True).start()


def completion_chunks(*, reply_id: Any, model: str, created: int, include_usage: bool = False,
                      on_finish: Any = None) -> Iterator[bytes]:
    """The reply as `chat.completion.chunk` SSE frames, from its first event, ending with `[DONE]`.

    `on_finish(reply)` (billing, idempotency record) runs exactly once: when the reply finishes, or, if
    the client disconnects first (the server closes this generator), on a thread once it finishes.
    """
    settled = on_finish is None

    def finish(reply: Message) -> None:
        nonlocal settled
        if not settled:
            settled = True
            on_finish(reply)

    try:
        yield from _chunks(reply_id=reply_id, model=model, created=created, include_usage=include_usage,
                           on_finish=finish)
    finally:
        if not settled:
            settled = True
            _settle_when_done(reply_id, on_finish)


def _chunks(*, reply_id: Any, model: str, created: int, include_usage: bool, on_finish: Any) -> Iterator[bytes]:
    cid, bus, after = completion_id(reply_id), stream_bus(), None

    def chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}], **extra}

    yield _sse(chunk({"role": "assistant", "content": ""}))
    deadline, heartbeat = time.monotonic() + _timeout_s(), time.monotonic()
    while time.monotonic() < deadline:
        events = bus.read(str(reply_id), after, 1000)
        for event_id, event, data in events:
            after = event_id
            if event == "reasoning.delta":
                yield _sse(chunk({"reasoning_content": data.get("text", "")}))
            elif event == "answer.delta":
                yield _sse(chunk({"content": data.get("text", "")}))
            elif event == "retract":  # no OpenAI equivalent: tell Verity-aware clients what to drop
                yield _sse(chunk({}, verity={"event": "retract", "target": data.get("target", "answer")}))
            elif event in TERMINAL_EVENTS:
                try:
                    reply = _reply_final(reply_id)
                except PartnerApiError as exc:
                    yield _sse(exc.body())
                    return
                on_finish(reply)
                usage = usage_of(reply)
                yield _sse(chunk({}, finish_reason(reply), usage=usage, verity=verity_extra(reply)))
                if include_usage:
                    yield _sse({**chunk({}), "choices": [], "usage": usage})
                yield b"data: [DONE]\n\n"
                return
        if events:
            heartbeat = time.monotonic()
        elif after is None and _expired_stream_replay_ready(reply_id):
            # The event stream expired (TTL) but the reply is stored: replay it from the record.
            reply = _reply_final_or_none(reply_id)
            if reply is not None:
                if reply.reasoning:
                    yield _sse(chunk({"reasoning_content": reply.reasoning}))
                yield _sse(chunk({"content": _visible_content(reply)}))
                yield _sse(chunk({}, finish_reason(reply), usage=usage_of(reply), verity=verity_extra(reply)))
                yield b"data: [DONE]\n\n"
                return
        elif time.monotonic() - heartbeat > settings.VERITY_SSE_HEARTBEAT_S:
            heartbeat = time.monotonic()
            yield b": keep-alive\n\n"
    yield _sse(PartnerApiError(504, "timeout", "The reply did not finish in time.").body())
