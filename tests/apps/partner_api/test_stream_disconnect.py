"""A client that disconnects mid-stream is still billed for what was generated.

Design (docs/CONTRACTS.md): the generation is NOT stopped by a disconnect. The turn runs to its end
(a stored, audited record the partner can still read through /v1/conversations/{id}/messages), and
once it finishes its tokens go into the usage ledger exactly once. The stand-in engine is used because
the subject is the API's bookkeeping, slowed down so that the client leaves while tokens still flow.
"""

from __future__ import annotations

import json
import logging
import time

import httpx

from apps.apikeys.models import UsageRecord
from apps.conversations.models import Message


def test_a_disconnected_stream_is_billed_for_its_tokens(issue, inline_worker, live_server, caplog):
    caplog.set_level(logging.INFO, logger="apps.partner_api.replies")
    inline_worker.delay_s = 0.08  # ~25 words: the reply takes about two seconds
    key, api_key = issue()
    body = {"model": "finance", "stream": True, "messages": [{"role": "user", "content": "What is compound interest?"}]}
    reply_id = None
    with httpx.Client(base_url=live_server.url, timeout=60) as client, client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[len("data: "):])
            reply_id = chunk["id"].removeprefix("chatcmpl-")
            if chunk["choices"] and chunk["choices"][0]["delta"].get("reasoning_content"):
                break  # the first generated text arrived: leave mid-stream
    assert reply_id is not None
    assert not UsageRecord.objects.filter(reply_id=reply_id).exists()  # nothing billed yet: still generating

    deadline = time.monotonic() + 30
    while not UsageRecord.objects.filter(reply_id=reply_id).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    reply = Message.objects.get(pk=reply_id)
    assert reply.status == "complete"  # the generation ran to its end
    record = UsageRecord.objects.get(reply_id=reply_id)
    assert record.api_key_id == api_key.pk
    assert record.completion_tokens == reply.usage["completion_tokens"] > 5
    assert record.prompt_tokens == reply.usage["prompt_tokens"]
    time.sleep(0.5)
    assert UsageRecord.objects.filter(reply_id=reply_id).count() == 1  # billed once
    assert "client left the stream" in caplog.text  # billed by the disconnect path, not by a finished stream
