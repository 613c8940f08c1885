"""`Idempotency-Key` on POST: a retried request gets the first result, never a second generation."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx

from apps.apikeys.models import UsageRecord
from apps.conversations.models import Message

BODY = {"model": "finance", "messages": [{"role": "user", "content": "What is a dividend?"}]}


def _post(live_server, key: str, body: dict, idem: str) -> httpx.Response:
    return httpx.post(f"{live_server.url}/v1/chat/completions", content=json.dumps(body), timeout=60,
                      headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem,
                               "Content-Type": "application/json"})


def test_a_retry_returns_the_stored_result_without_generating_again(issue, inline_worker, live_server):
    key, _ = issue()
    first = _post(live_server, key, BODY, "retry-1")
    second = _post(live_server, key, BODY, "retry-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() and second.headers["Idempotent-Replayed"] == "true"
    assert len(inline_worker.prompts) == 1
    assert Message.objects.filter(role="assistant").count() == 1 and UsageRecord.objects.count() == 1


def test_concurrent_retries_follow_one_generation(issue, inline_worker, live_server):
    inline_worker.delay_s = 0.05
    key, _ = issue()
    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: _post(live_server, key, BODY, "burst-1"), range(4)))
    ok = [r for r in responses if r.status_code == 200]
    assert ok and all(r.json()["id"] == ok[0].json()["id"] for r in ok)
    assert all(r.status_code in (200, 409) for r in responses)
    assert len(inline_worker.prompts) == 1


def test_a_stream_retry_replays_the_same_reply(issue, inline_worker, live_server):
    key, _ = issue()
    body = {**BODY, "stream": True}
    first = _post(live_server, key, body, "stream-1").text
    second = _post(live_server, key, body, "stream-1").text
    assert first.endswith("data: [DONE]\n\n") and second.endswith("data: [DONE]\n\n")
    content = [json.loads(line[6:]) for line in second.splitlines() if line.startswith("data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in content if c["choices"]).strip()
    assert len(inline_worker.prompts) == 1


def test_reusing_a_key_for_another_request_is_a_400(issue, inline_worker, live_server):
    key, _ = issue()
    assert _post(live_server, key, BODY, "reuse-1").status_code == 200
    other = _post(live_server, key, {**BODY, "messages": [{"role": "user", "content": "Other?"}]}, "reuse-1")
    assert other.status_code == 400 and other.json()["error"]["code"] == "idempotency_key_reused"


def test_a_failed_request_frees_its_key(issue, inline_worker, live_server):
    key, _ = issue()
    bad = _post(live_server, key, {**BODY, "model": "astrology"}, "free-1")
    assert bad.status_code == 404
    assert _post(live_server, key, {**BODY, "model": "astrology"}, "free-1").status_code == 404
