"""Chat completions through the conversation core: parse an OpenAI-style request, submit it as a turn,
then wait for or stream the reply (`apps.partner_api.replies` follows and shapes it).

Every completion is a conversation turn: `turn_submit` runs the safety input stage and stores the turn,
the worker generates through the safety output stage and appends the audit record. A request without a
`conversation` gets a new conversation; its earlier `messages` are stored as that conversation's history
(user turns pass the input stage too), `reasoning_content` a client sends back is dropped (R1 rule).
Sampling fields (temperature, top_p, max_tokens, stop, seed, response_format) go to `turn_submit`, which
validates them and stores them on the reply; the generation uses exactly those.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.apikeys.models import ApiKey
from apps.conversations.models import Conversation, Message, Role, Status
from apps.conversations.services import conversation_create, turn_submit
from apps.partner_api.errors import PartnerApiError, invalid
from apps.partner_api.models import PartnerConversation
from apps.partner_api.replies import completion_body, completion_chunks, reply_wait
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
    # The published pack is fetched by conversation_create (or the conversation pins one): no lookup here.
    domain, profile = model_resolve(model=data["model"], api_key=api_key, published_check=False)
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
    if data.get("response_format") is not None:
        # Checked (and json_schema compiled) by turn_submit before anything is stored: 400 naming the param.
        sampling["response_format"] = data["response_format"]
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
        submitted = turn_submit(conversation=conversation, text=request.text, sampling=request.sampling)
    return Submitted(conversation=conversation, reply=submitted.reply)


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
