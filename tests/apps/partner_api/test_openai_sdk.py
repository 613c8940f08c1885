"""The official `openai` package, unmodified, against a live Verity: completions, streams, typed errors.

The engine is the stand-in here (the conversation core and the API are the subject); the real model
and a real Celery worker are exercised in test_e2e_real_model.py.
"""

from __future__ import annotations

import openai
import pytest

from apps.audit.models import AuditRecord
from apps.conversations.models import Conversation, Message

QUESTION = [{"role": "user", "content": "What is compound interest?"}]


def test_non_streaming_completion_has_content_reasoning_usage(issue, inline_worker, client_for):
    key, _ = issue()
    reply = client_for(key).chat.completions.create(model="finance", messages=QUESTION, max_tokens=64)
    choice = reply.choices[0]
    assert reply.object == "chat.completion" and reply.model == "finance"
    assert "Compound interest is interest earned" in choice.message.content
    assert choice.message.reasoning_content.startswith("The user asks about interest")
    assert choice.finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    verity = reply.model_extra["verity"]
    assert verity["input_action"] == "allow" and isinstance(verity["verdicts"], list)
    # It went through the conversation core: stored turn and one audit record for it.
    stored = Message.objects.get(pk=verity["message_id"])
    assert stored.conversation.partner_link.partner_app.name == "partner"
    assert AuditRecord.objects.filter(event="turn.completed", subject=verity["message_id"]).count() == 1


def test_streaming_completion_yields_reasoning_then_content_then_done(issue, inline_worker, client_for):
    key, _ = issue()
    stream = client_for(key).chat.completions.create(model="finance-r1", messages=QUESTION, stream=True,
                                                     stream_options={"include_usage": True})
    reasoning, content, finish, usage = "", "", None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
        content += delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
    assert reasoning.startswith("The user asks about interest")
    assert "Compound interest is interest earned" in content
    assert finish == "stop" and usage.completion_tokens > 0


def test_reasoning_content_in_history_is_accepted_and_not_fed_back(issue, inline_worker, client_for):
    key, _ = issue()
    messages = [
        {"role": "user", "content": "Define APR."},
        {"role": "assistant", "content": "APR is the annual percentage rate.", "reasoning_content": "SECRET-THOUGHT"},
        {"role": "user", "content": "And APY?"},
    ]
    reply = client_for(key).chat.completions.create(model="finance", messages=messages)
    assert reply.choices[0].finish_reason == "stop"
    prompt = inline_worker.prompts[-1]
    assert not any("SECRET-THOUGHT" in m["content"] for m in prompt)
    assert any("annual percentage rate" in m["content"] for m in prompt)
    conversation = Conversation.objects.get(pk=reply.model_extra["verity"]["conversation_id"])
    assert [m.role for m in conversation.messages.order_by("created_at")] == ["user", "assistant", "user", "assistant"]


def test_a_blocked_input_maps_to_content_filter_with_the_verdict(issue, inline_worker, client_for):
    key, _ = issue()
    reply = client_for(key).chat.completions.create(model="finance", messages=[
        {"role": "user", "content": "How do I structure cash deposits to avoid the bank reporting them?"}])
    assert reply.choices[0].finish_reason == "content_filter"
    verity = reply.model_extra["verity"]
    assert verity["input_action"] == "block"
    assert any(v["action"] == "block" for v in verity["verdicts"])
    assert inline_worker.prompts == []  # the model never saw it


def test_errors_are_the_sdks_typed_exceptions(issue, client_for):
    key, _ = issue(requests_per_minute=1)
    with pytest.raises(openai.AuthenticationError) as auth:
        client_for("vk_000000000000_" + "x" * 43).models.list()
    assert auth.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError) as missing:
        client_for(key).chat.completions.create(model="astrology", messages=QUESTION)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.RateLimitError) as limited:
        client_for(key).chat.completions.create(model="finance", messages=QUESTION, n=2)
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.response.headers["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"temperature": 3}, "temperature"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"stop": ["a", ""]}, "stop"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
def test_bad_requests_are_bad_request_errors_naming_the_param(issue, client_for, extra, param):
    key, _ = issue()
    body = {"model": "finance", "messages": QUESTION, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        client_for(key).chat.completions.create(**body)
    error = info.value.body
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"
    assert not Conversation.objects.exists()


def test_models_list_follows_the_keys_domains(issue, client_for):
    key, _ = issue(domains=["finance"])
    ids = [m.id for m in client_for(key).models.list()]
    assert ids == ["finance", "finance-r1", "finance-zero"]
    everything = [m.id for m in client_for(issue(name="all")[0]).models.list()]
    assert {"finance", "medical-zero", "legal-r1"} <= set(everything)
    with pytest.raises(openai.NotFoundError):
        client_for(key).chat.completions.create(model="medical", messages=QUESTION)


def test_a_format_the_engine_refuses_at_generation_time_is_a_400(issue, inline_worker, client_for):
    # The up-front check passes; the engine (stand-in here) still refuses when it builds the constraint.
    from apps.core.errors import ApplicationError, ErrorCode

    inline_worker.fail_with = ApplicationError(ErrorCode.VALIDATION, "response_format cannot be enforced: "
                                               "the vocabulary cannot spell it", field="response_format")
    with pytest.raises(openai.BadRequestError) as info:
        client_for(issue()[0]).chat.completions.create(model="finance", messages=QUESTION,
                                                       response_format={"type": "json_object"})
    assert info.value.body["param"] == "response_format" and info.value.code == "invalid_request_error"
