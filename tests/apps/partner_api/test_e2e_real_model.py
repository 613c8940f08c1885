"""End to end in services mode: the official `openai` client -> live Verity -> Redis -> a real Celery
worker running the real bundled model (capped at 24 new tokens) -> safety pipeline -> audit chain.
"""

from __future__ import annotations

import pytest

from apps.audit.models import AuditRecord
from apps.audit.services import audit_verify
from apps.conversations.models import Message

pytestmark = pytest.mark.services

QUESTION = [{"role": "user", "content": "In one sentence, what is a savings account?"}]


def test_openai_sdk_against_the_real_worker_and_model(real_model, start_worker, issue, client_for):
    start_worker("partner")
    key, _ = issue()
    client = client_for(key, timeout=300)

    reply = client.chat.completions.create(model="finance", messages=QUESTION, max_tokens=16, temperature=0.6)
    assert reply.choices[0].finish_reason in ("stop", "length", "content_filter")
    assert reply.choices[0].message.content.strip()
    assert 0 < reply.usage.completion_tokens <= 24 and reply.usage.prompt_tokens > 10
    stored = Message.objects.get(pk=reply.model_extra["verity"]["message_id"])
    assert stored.status == "complete" and stored.model_version
    assert AuditRecord.objects.filter(event="turn.completed", subject=str(stored.id)).count() == 1

    streamed, finish = "", None
    for chunk in client.chat.completions.create(model="finance", messages=QUESTION, max_tokens=16, stream=True):
        if chunk.choices:
            streamed += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert streamed.strip() and finish in ("stop", "length", "content_filter")
    assert audit_verify().ok
