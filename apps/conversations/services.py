"""Conversation services: create a conversation, submit a turn, generate a reply (the worker's job).

`turn_submit` runs in ONE transaction: the safety input stage (fail closed), the user message, a
pending reply and its outbox row, the pinned pack version and engine profile; the task is enqueued
only on commit. `reply_generate` is idempotent: it claims the reply's outbox row, streams from the
engine through the safety output stage to the stream bus, stores the final message and appends one
audit record. A restarted generation (after a worker died) starts from scratch and first tells
stream consumers to `retract` what they showed.

The prompt comes from `memory.conversation_window` (budget, running summary, context gauge). An
escalated turn makes no model call: the reply is the pack's escalation text and an `escalation` event.
Stop sets a flag on the stream bus; the loop checks it before each token and stores the partial
answer as `cancelled`. The customer-facing actions (cancel, regenerate, feedback, export, delete,
rename, handoff, expert replies) live in `apps.conversations.actions`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_append, payload_digest
from apps.conversations.memory import conversation_window
from apps.conversations.models import TERMINAL_STATUSES, Conversation, Message, Outbox, Role, Status
from apps.conversations.streams import stream_bus
from apps.core.errors import ApplicationError, ErrorCode
from apps.inference import services as inference
from apps.prompt_packs.selectors import pack_for_new_conversation
from apps.safety.guard import input_verdict_require
from apps.safety.partial import SOURCE_CANNOT_WRITE
from apps.safety.pipeline import SafetyPipeline

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 1.0
PROFILES = ("r1", "zero")


def conversation_create(*, tenant: Any, user: Any, domain: str, profile: str = "r1",
                        title: str = "") -> Conversation:
    """Start a conversation on the domain's published pack (pinned for its whole life)."""
    if not isinstance(domain, str) or not domain.strip():
        raise ApplicationError(ErrorCode.VALIDATION, "Field 'domain' is required.", field="domain")
    if profile not in PROFILES:
        raise ApplicationError(ErrorCode.VALIDATION, f"Unknown engine profile {profile!r}.", field="profile")
    conversation_id = uuid.uuid4()  # the canary share (if any) is a pure function of the id
    pack = pack_for_new_conversation(domain=domain.strip(), key=conversation_id)
    return Conversation.objects.create(
        id=conversation_id,
        tenant=tenant, user=user, domain=pack.domain, pack_version=pack, engine_profile=profile,
        title=title.strip()[:200],
    )


@dataclass(frozen=True)
class TurnSubmitted:
    user_message: Message
    reply: Message


def turn_submit(*, conversation: Conversation, text: Any, sampling: dict[str, Any] | None = None) -> TurnSubmitted:
    """Check the input, store the user message, a pending reply and its outbox row; enqueue on commit.

    `sampling` holds a request's overrides (temperature, top_p, max_tokens, stop, seed,
    response_format); they are validated and stored on the reply merged over the pack's defaults, and
    the generation uses exactly that. Raises ApplicationError (MESSAGE_EMPTY, MESSAGE_TOO_LONG,
    INVALID_ENCODING, VALIDATION naming the sampling field) before anything is written; a safety check
    that errors blocks the turn (the pipeline fails closed).
    """
    from apps.conversations.dispatch import reply_enqueue  # dispatch imports this module

    pack = conversation.pack_version
    reply_sampling = {**dict(pack.sampling or {}), **inference.sampling_validate(sampling)}
    decision = SafetyPipeline.for_pack(pack).check_input(text)
    # Everything that can refuse the turn ran above; below are writes only. Inside a caller's
    # transaction (the partner API creates the conversation in the same one) no savepoint is needed:
    # a failed write fails the caller's transaction as a whole.
    with transaction.atomic(savepoint=False):
        user_message = Message(
            conversation=conversation, role=Role.USER, status=Status.COMPLETE, content=decision.text,
            verdicts=[v.as_dict() for v in decision.verdicts], input_action=decision.action,
            pack_version=pack, engine_profile=conversation.engine_profile,
        )
        reply = Message(
            conversation=conversation, role=Role.ASSISTANT, status=Status.PENDING, reply_to=user_message,
            input_action=decision.action, preface=decision.message or "", pack_version=pack,
            engine_profile=conversation.engine_profile, sampling=reply_sampling,
            escalation_kind=(decision.escalation_kind or "human") if decision.action == "escalate" else "",
        )
        # One INSERT for both rows (ids are made here, so the reply can point at the user message).
        Message.objects.bulk_create([user_message, reply])
        if reply.created_at <= user_message.created_at:  # stamped within one clock tick: keep the order
            reply.created_at = user_message.created_at + timezone.timedelta(microseconds=1)
            Message.objects.filter(pk=reply.pk).update(created_at=reply.created_at)
        Outbox.objects.create(reply=reply, enqueued_at=timezone.now())
        if not conversation.title:
            conversation.title = " ".join(decision.text.split())[:60]
            conversation.save(update_fields=["title", "updated_at"])
        reply_id = str(reply.id)
        transaction.on_commit(lambda: reply_enqueue(reply_id))
    return TurnSubmitted(user_message=user_message, reply=reply)


class ClaimLostError(Exception):
    """Another worker took over this reply (the reconciler judged us dead); stop without storing."""


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"


def _claim(reply_id: str, worker: str) -> tuple[Message, int] | None:
    """Take the reply for this worker, or None when it is finished or another live worker holds it."""
    stale_before = timezone.now() - timezone.timedelta(seconds=settings.VERITY_RECONCILE_AFTER_S)
    with transaction.atomic():
        outbox = Outbox.objects.select_for_update().filter(reply_id=reply_id).first()
        if outbox is None or outbox.done_at is not None:
            return None
        # Everything the generation and its audit record read, in this one query.
        reply = Message.objects.select_related(
            "conversation__tenant", "conversation__user", "conversation__pack_version", "pack_version",
            "reply_to",
        ).get(pk=reply_id)
        if reply.status in TERMINAL_STATUSES:
            return None
        alive = outbox.claimed_by and outbox.heartbeat_at and outbox.heartbeat_at > stale_before
        if reply.status == Status.STREAMING and alive:
            return None
        outbox.claimed_by, outbox.heartbeat_at = worker, timezone.now()
        outbox.attempts += 1
        outbox.save(update_fields=["claimed_by", "heartbeat_at", "attempts", "updated_at"])
        reply.status = Status.STREAMING
        reply.save(update_fields=["status", "updated_at"])
        return reply, outbox.attempts


def _heartbeat(reply_id: str, worker: str) -> None:
    if not Outbox.objects.filter(reply_id=reply_id, claimed_by=worker).update(heartbeat_at=timezone.now()):
        raise ClaimLostError(reply_id)


def _history(reply: Message) -> list[dict[str, str]]:
    """Earlier complete turns, oldest first; reasoning is never fed back (R1 rule)."""
    # Replies replaced by regenerate are records, not memory: the customer no longer sees them.
    earlier = (Message.objects.filter(conversation=reply.conversation, status=Status.COMPLETE,
                                      created_at__lt=reply.reply_to.created_at, superseded_by__isnull=True)
               .order_by("created_at").values("role", "content"))
    return [{"role": m["role"], "content": m["content"]} for m in earlier]


def reply_generate(*, reply_id: str) -> Message | None:
    """Produce, store and audit one reply; a no-op for a reply already finished or held by a live worker."""
    worker = _worker_id()
    claimed = _claim(str(reply_id), worker)
    if claimed is None:
        return None
    reply, attempt = claimed
    bus = stream_bus()
    if attempt > 1:
        # A previous attempt died mid-stream: consumers drop what it showed before we start over.
        for target in ("reasoning", "answer"):
            bus.publish(str(reply.id), "retract", {"target": target, "reason": "restart"})
    try:
        return _generate(reply, worker, bus)
    except ClaimLostError:
        logger.warning("reply %s was taken over by another worker; this attempt stops", reply_id)
        return None
    except ApplicationError as exc:
        return _fail(reply, worker, bus, exc.code.value, exc.message)
    except Exception as exc:  # anything else is an internal failure of this turn, recorded as such
        logger.exception("reply %s failed", reply_id)
        return _fail(reply, worker, bus, ErrorCode.INTERNAL.value, f"Generation failed: {type(exc).__name__}")


def _generate(reply: Message, worker: str, bus: Any) -> Message:
    reply_id, pack, profile = str(reply.id), reply.pack_version, reply.engine_profile
    user_message = reply.reply_to
    # Fail closed: a turn without a sound input verdict never reaches the model (failed and audited).
    input_verdict_require(input_action=reply.input_action, verdicts=user_message.verdicts if user_message else None)
    # Replies stored before Message.sampling existed (or made by regenerate) use the pack's defaults.
    sampling = dict(reply.sampling or pack.sampling or {})
    free_text = (sampling.get("response_format") or {}).get("type", "text") == "text"
    if free_text:
        # The engine never writes "@" (an email address would only show as a placeholder anyway), so
        # the output stage may let a word's first letters out with its first token (first paint).
        sampling["banned_chars"] = "".join(sorted(set(sampling.get("banned_chars", "")) | set(SOURCE_CANNOT_WRITE)))
    stage = SafetyPipeline.for_pack(pack).output_stage(mid_word=free_text)
    preface = reply.preface.strip()
    escalated = reply.input_action == "escalate"
    if escalated:
        bus.publish(reply_id, "escalation", {"kind": reply.escalation_kind or "human", "text": preface})
    if preface:
        tail = "" if reply.input_action in ("block", "escalate") else "\n\n"
        bus.publish(reply_id, "answer.delta", {"text": preface + tail})
    finish_reason, usage, model_version, produced, context, memory = "stop", {}, "", False, {}, {}
    if reply.input_action == "allow":
        model_version = inference.engine_version(profile)
        max_tokens = min(int(sampling.get("max_tokens", settings.VERITY_MAX_NEW_TOKENS)),
                         settings.VERITY_MAX_NEW_TOKENS)
        window = conversation_window(conversation=reply.conversation, history=_history(reply),
                                     user_text=user_message.content, profile=profile, max_tokens=max_tokens)
        context = window.gauge
        memory = {"window_start": window.window_start, "summary_regenerated": window.summary_regenerated}
        if window.build.trimmed:
            bus.publish(reply_id, "context_trimmed", window.trimmed_event())
        finish_reason, usage, produced = _stream(reply_id, worker, bus, stage, window.build.messages,
                                                 sampling, max_tokens, profile)
        note = _no_answer_note(stage, produced, finish_reason, sampling)
        if note:
            bus.publish(reply_id, "answer.delta", {"text": note})
        _publish(bus, reply_id, _without_disclaimer(stage) if structured_output(sampling) else stage.finish())
    else:
        note = ""
    if stage.blocked:
        finish_reason = "content_filter"
    # A block at finish (held-back reasoning) retracts the note like any answer: the refusal stands.
    answer = (note if note and not stage.blocked else stage.answer_text) if produced else ""
    content = "\n\n".join(part for part in (preface, answer) if part)
    verdicts = list(user_message.verdicts) + [v.as_dict() for v in stage.verdicts]
    disclaimer = "" if reply.input_action != "allow" else (stage.disclaimer or "")
    with transaction.atomic():
        _heartbeat(reply_id, worker)  # still ours? then finish atomically
        reply.content, reply.reasoning = content, stage.reasoning_text
        reply.status = Status.CANCELLED if finish_reason == "cancelled" else Status.COMPLETE
        reply.finish_reason, reply.usage = finish_reason, usage
        reply.verdicts, reply.disclaimer, reply.model_version = verdicts, disclaimer, model_version
        reply.completed_at = timezone.now()
        reply.save()
        Outbox.objects.filter(reply_id=reply_id).update(done_at=timezone.now())
        _audit(reply, "turn.completed", verdicts, raw={"answer": stage.raw("answer"),
                                                       "reasoning": stage.raw("reasoning")})
    done = {"message_id": reply_id, "content": content, "reasoning": reply.reasoning,
            "finish_reason": finish_reason, "usage": usage, "disclaimer": disclaimer, "context": context,
            "memory": memory}
    if escalated:
        done["escalation"] = {"kind": reply.escalation_kind or "human", "text": preface}
    bus.publish(reply_id, "done", done)
    return reply


def _stream(reply_id: str, worker: str, bus: Any, stage: Any, messages: list[dict[str, str]],
            sampling: dict[str, Any], max_tokens: int, profile: str) -> tuple[str, dict[str, Any], bool]:
    """Relay the engine's tokens through the output stage; stop at the next token once stop was pressed."""
    finish_reason, usage, produced = "stop", {}, False
    if bus.cancel_requested(reply_id):
        return "cancelled", usage, produced
    chunks = inference.generation_stream(messages=messages, sampling=sampling, max_tokens=max_tokens,
                                         profile=profile)
    last_beat = time.monotonic()
    try:
        for chunk in chunks:
            if chunk.kind == "finish":
                finish_reason, usage = chunk.finish_reason or "stop", chunk.usage
                continue
            if bus.cancel_requested(reply_id):
                # Closing the generator (finally below) ends the engine's loop: no further token is made.
                return "cancelled", usage, produced
            produced = True
            _publish(bus, reply_id, stage.feed(chunk.kind, chunk.text))
            if time.monotonic() - last_beat >= HEARTBEAT_EVERY_S:
                _heartbeat(reply_id, worker)
                last_beat = time.monotonic()
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return finish_reason, usage, produced


# What the customer reads when the model wrote no answer at all (the stored finish_reason tells which).
NO_ANSWER_NOTES = {
    "length": "I ran out of room for this reply while still thinking it through, before I could write an "
              "answer. Please ask again, perhaps a narrower question.",
    "stop": "I could not put an answer together this time. Please ask again or rephrase your question.",
}


def _no_answer_note(stage: Any, produced: bool, finish_reason: str, sampling: dict[str, Any]) -> str:
    """A free-text reply whose model output held no answer (the reasoning used up `max_tokens`, or the
    model stopped right after it) gets a plain note instead of an empty bubble. The note is ours, not
    the model's: the audit's raw record keeps what the model wrote."""
    if not produced or stage.blocked or finish_reason not in NO_ANSWER_NOTES or structured_output(sampling):
        return ""
    if finish_reason == "stop" and sampling.get("stop"):
        return ""  # the caller's own stop string may have ended the answer before it began: theirs to read
    return "" if stage.raw("answer").strip() else NO_ANSWER_NOTES[finish_reason]


def structured_output(sampling: dict[str, Any] | None) -> bool:
    """A reply constrained to JSON: its content must stay parseable, so the disclaimer travels beside it."""
    response_format = (sampling or {}).get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")


def _without_disclaimer(stage: Any) -> list[Any]:
    """The output stage's final emissions minus the appended disclaimer (still stored and sent in `done`)."""
    emissions = stage.finish()
    if stage.disclaimer and emissions and emissions[-1].kind == "answer" \
            and emissions[-1].text == "\n\n" + stage.disclaimer:
        emissions = emissions[:-1]
    return emissions


def _publish(bus: Any, reply_id: str, emissions: list[Any]) -> None:
    for emission in emissions:
        if emission.kind == "retract":
            bus.publish(reply_id, "retract", {"target": emission.target or "answer", "reason": "safety"})
        elif emission.text:
            bus.publish(reply_id, f"{emission.kind}.delta", {"text": emission.text})


def _fail(reply: Message, worker: str, bus: Any, code: str, message: str) -> Message | None:
    with transaction.atomic():
        if not Outbox.objects.filter(reply_id=reply.id, claimed_by=worker).update(done_at=timezone.now()):
            return None
        reply.status, reply.error, reply.completed_at = Status.FAILED, {"code": code, "message": message}, \
            timezone.now()
        reply.save(update_fields=["status", "error", "completed_at", "updated_at"])
        _audit(reply, "turn.failed", list(reply.reply_to.verdicts), raw={"error": code})
    bus.publish(str(reply.id), "error", {"code": code, "message": message})
    return reply


def _audit(reply: Message, event: str, verdicts: list[dict[str, Any]], raw: dict[str, Any]) -> None:
    conversation = reply.conversation
    audit_append(
        event=event, actor=conversation.user or "system", tenant=conversation.tenant, subject=str(reply.id),
        payload={"conversation": str(conversation.id), "user_message": reply.reply_to.content,
                 "content": reply.content, "reasoning": reply.reasoning, "raw_digest": payload_digest(raw),
                 "status": reply.status, "finish_reason": reply.finish_reason, "usage": reply.usage},
        verdicts=verdicts, model_version=reply.model_version, pack_version=reply.pack_version,
    )
