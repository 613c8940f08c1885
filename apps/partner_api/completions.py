"""Chat completions through the conversation core: parse an OpenAI-style request, submit it as a turn,
wait for or stream the reply, and shape the result the way OpenAI (and DeepSeek's reasoning models) do.

Every completion is a conversation turn: `turn_submit` runs the safety input stage and stores the turn,
the worker generates through the safety output stage and appends the audit record. A request without a
`conversation` gets a new conversation; its earlier `messages` are stored as that conversation's history
(user turns pass the input stage too), `reasoning_content` a client sends back is dropped (R1 rule).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.apikeys.models import ApiKey
from apps.conversations.models import Conversation, Message, Role, Status
from apps.conversations.services import conversation_create, turn_submit
from apps.conversations.streams import TERMINAL_EVENTS, stream_bus
from apps.partner_api.errors import PartnerApiError, invalid
from apps.partner_api.models import PartnerConversation
from apps.partner_api.selectors import model_resolve, partner_conversation_get
from apps.partner_api.services import (
    completion_account,
    idempotency_attach_reply,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
)
from apps.safety.pipeline import SafetyPipeline

HISTORY_ROLES = {"user", "assistant"}
INSTRUCTION_ROLES = {"system", "developer"}
FINISH_REASONS = {"stop", "length", "content_filter"}


@dataclass
class CompletionRequest:
    model: str
    domain: str
    profile: str
    text: str
    history: list[dict[str, str]] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    conversation_id: Any = None


def _content_text(content: Any, where: str) -> str:
    """OpenAI content is a string or a list of parts; only text parts are supported."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PartnerApiError(400, "unsupported_content", "Only text content parts are supported.",
                                      param=f"{where}.content[{index}]")
            texts.append(part["text"])
        return "".join(texts)
    if content is None:
        return ""
    raise invalid("Message content must be a string or a list of text parts.", param=f"{where}.content")


def completion_request_parse(*, data: dict[str, Any], api_key: ApiKey) -> CompletionRequest:
    """Turn validated request fields into a CompletionRequest; 400/404 for what the core cannot serve."""
    if data.get("response_format") and data["response_format"].get("type", "text") != "text":
        raise PartnerApiError(400, "unsupported", "response_format json_object / json_schema is not supported "
                              "by the engine yet; omit it or use type 'text'.", param="response_format")
    domain, profile = model_resolve(model=data["model"], api_key=api_key)
    instructions, turns = [], []
    for index, message in enumerate(data["messages"]):
        where = f"messages[{index}]"
        role = message.get("role")
        if role in INSTRUCTION_ROLES:
            instructions.append(_content_text(message.get("content"), where))
        elif role in HISTORY_ROLES:
            # `reasoning_content` from earlier assistant turns is accepted and dropped: R1 must not see it.
            turns.append({"role": role, "content": _content_text(message.get("content"), where), "where": where})
        elif role in ("tool", "function"):
            raise PartnerApiError(400, "unsupported", "Tool and function messages are not supported.",
                                  param=f"{where}.role")
        else:
            raise invalid(f"Unknown message role {role!r}.", param=f"{where}.role")
    if not turns or turns[-1]["role"] != "user":
        raise invalid("The last message must have role 'user'.", param="messages")
    last = turns.pop()
    text = "\n\n".join([*[i for i in instructions if i.strip()], last["content"]])
    max_tokens = data.get("max_completion_tokens") or data.get("max_tokens")
    sampling = {name: data[name] for name in ("temperature", "top_p", "seed") if data.get(name) is not None}
    if max_tokens is not None:
        sampling["max_tokens"] = max_tokens
    if data.get("stop"):
        sampling["stop"] = [data["stop"]] if isinstance(data["stop"], str) else list(data["stop"])
    return CompletionRequest(model=data["model"], domain=domain, profile=profile, text=text, history=turns,
                             sampling=sampling, stream=bool(data.get("stream")),
                             conversation_id=data.get("conversation"))


def token_estimate(data: Any) -> int:
    """What a request may cost before it runs: prompt characters / 4 plus the completion budget."""
    if not isinstance(data, dict):
        return 1
    chars = 0
    for message in data.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        chars += len(content) if isinstance(content, str) else len(json.dumps(content or ""))
    budget = data.get("max_completion_tokens") or data.get("max_tokens") or settings.VERITY_MAX_NEW_TOKENS
    try:
        budget = min(int(budget), settings.VERITY_MAX_NEW_TOKENS)
    except (TypeError, ValueError):
        budget = settings.VERITY_MAX_NEW_TOKENS
    return max(1, chars // 4 + max(1, budget))


@dataclass(frozen=True)
class Submitted:
    conversation: Conversation
    reply: Message


def _history_store(*, conversation: Conversation, turns: list[dict[str, str]]) -> None:
    """Store the client's earlier turns as the new conversation's history (user turns checked first)."""
    pipeline = SafetyPipeline.for_pack(conversation.pack_version) if turns else None
    for turn in turns:
        content, verdicts = turn["content"], []
        if turn["role"] == "user":
            decision = pipeline.check_input(content)
            if decision.action == "block":
                raise PartnerApiError(400, "content_filter", "An earlier message in the history was refused by "
                                      "the safety policy.", param=turn["where"])
            content, verdicts = decision.text, [v.as_dict() for v in decision.verdicts]
        Message.objects.create(
            conversation=conversation, role=Role.USER if turn["role"] == "user" else Role.ASSISTANT,
            status=Status.COMPLETE, content=content, verdicts=verdicts, pack_version=conversation.pack_version,
            engine_profile=conversation.engine_profile,
        )


def completion_submit(*, request: CompletionRequest, api_key: ApiKey) -> Submitted:
    """Create (or continue) the conversation and submit the last user message as a turn."""
    with transaction.atomic():
        if request.conversation_id:
            link = partner_conversation_get(api_key=api_key, conversation_id=request.conversation_id)
            conversation = link.conversation
            if conversation.domain != request.domain or conversation.engine_profile != request.profile:
                raise invalid(f"Conversation {conversation.id} uses model "
                              f"{conversation.domain}-{conversation.engine_profile}; send that model.",
                              param="model")
        else:
            conversation = conversation_create(tenant=api_key.tenant, user=None, domain=request.domain,
                                               profile=request.profile)
            PartnerConversation.objects.create(conversation=conversation, tenant=api_key.tenant,
                                               partner_app=api_key.partner_app, api_key=api_key)
            _history_store(conversation=conversation, turns=request.history)
        submitted = turn_submit(conversation=conversation, text=request.text)
    return Submitted(conversation=conversation, reply=submitted.reply)


def _timeout_s() -> float:
    return float(getattr(settings, "VERITY_PARTNER_TIMEOUT_S", 300))


def reply_wait(*, reply_id: Any) -> Message:
    """Block until the reply is finished (its `done`/`error` event), then return the stored message."""
    bus, after = stream_bus(), None
    deadline = time.monotonic() + _timeout_s()
    while time.monotonic() < deadline:
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


def _reply_final(reply_id: Any) -> Message:
    reply = Message.objects.select_related("conversation", "pack_version").get(pk=reply_id)
    if reply.status == Status.FAILED:
        raise reply_error(reply.error or {})
    return reply


def _expired_stream_replay_ready(reply_id: Any) -> bool:
    return Message.objects.filter(pk=reply_id, status__in=(Status.COMPLETE, Status.FAILED)).exists()


def _reply_final_or_none(reply_id: Any) -> Message | None:
    reply = Message.objects.select_related("conversation", "pack_version").get(pk=reply_id)
    return reply if reply.status == Status.COMPLETE else None


def reply_error(error: dict[str, Any]) -> PartnerApiError:
    code, message = error.get("code", "internal_error"), error.get("message", "Generation failed.")
    status = {"engine_unavailable": 503, "context_length_exceeded": 400, "validation_error": 400}.get(code, 500)
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


def completion_body(*, reply: Message, model: str) -> dict[str, Any]:
    """The non-streaming response; `content` carries the disclaimer exactly as the stream shows it."""
    content = reply.content + (f"\n\n{reply.disclaimer}" if reply.disclaimer else "")
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


def completion_chunks(*, reply_id: Any, model: str, created: int, include_usage: bool = False,
                      on_finish: Any = None) -> Iterator[bytes]:
    """The reply as `chat.completion.chunk` SSE frames, from its first event, ending with `[DONE]`."""
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
                if on_finish is not None:
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
                content = reply.content + (f"\n\n{reply.disclaimer}" if reply.disclaimer else "")
                yield _sse(chunk({"content": content}))
                yield _sse(chunk({}, finish_reason(reply), usage=usage_of(reply), verity=verity_extra(reply)))
                yield b"data: [DONE]\n\n"
                return
        elif time.monotonic() - heartbeat > settings.VERITY_SSE_HEARTBEAT_S:
            heartbeat = time.monotonic()
            yield b": keep-alive\n\n"
    yield _sse(PartnerApiError(504, "timeout", "The reply did not finish in time.").body())


@dataclass(frozen=True)
class CompletionOutcome:
    body: dict[str, Any] | None = None  # non-streaming response
    chunks: Iterator[bytes] | None = None  # streaming response
    replayed: bool = False


def completion_run(*, api_key: ApiKey, data: dict[str, Any], raw_body: bytes, path: str,
                   idempotency_key: str | None, reserved_tokens: int) -> CompletionOutcome:
    """One chat completion request, end to end, honouring `Idempotency-Key` (no second generation)."""
    claim = None
    if idempotency_key is not None:
        claim = idempotency_claim(api_key=api_key, key=idempotency_key, path=path, body=raw_body)
        if claim.replay:
            return _replay(claim.record, stream=bool(data.get("stream")), model=data["model"])
    try:
        request = completion_request_parse(data=data, api_key=api_key)
        submitted = completion_submit(request=request, api_key=api_key)
    except BaseException:
        if claim is not None:
            idempotency_release(record=claim.record)
        raise
    reply_id, model = submitted.reply.id, request.model
    if claim is not None:
        idempotency_attach_reply(record=claim.record, reply_id=reply_id, model=model)

    def finish(reply: Message) -> None:
        completion_account(api_key=api_key, reply=reply, model=model, reserved_tokens=reserved_tokens)
        if claim is not None:
            idempotency_complete(record=claim.record, status=200, body=completion_body(reply=reply, model=model))

    if request.stream:
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        return CompletionOutcome(chunks=completion_chunks(
            reply_id=reply_id, model=model, created=int(submitted.reply.created_at.timestamp()),
            include_usage=include_usage, on_finish=finish))
    reply = reply_wait(reply_id=reply_id)
    finish(reply)
    return CompletionOutcome(body=completion_body(reply=reply, model=model))


def _replay(record: Any, *, stream: bool, model: str) -> CompletionOutcome:
    """The earlier request's result: stored body, or the same reply followed to its end."""
    if record.reply_id is None:
        if record.completed_at is not None and record.response_body is not None and not stream:
            return CompletionOutcome(body=record.response_body, replayed=True)
        raise PartnerApiError(409, "request_in_progress", "A request with this Idempotency-Key is still being "
                              "processed; retry shortly.")
    if stream:
        reply = Message.objects.get(pk=record.reply_id)
        return CompletionOutcome(chunks=completion_chunks(
            reply_id=record.reply_id, model=record.model or model, created=int(reply.created_at.timestamp())),
            replayed=True)
    if record.completed_at is not None and record.response_body is not None:
        return CompletionOutcome(body=record.response_body, replayed=True)
    reply = reply_wait(reply_id=record.reply_id)
    return CompletionOutcome(body=completion_body(reply=reply, model=record.model or model), replayed=True)
