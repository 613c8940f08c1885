"""Per-key limits under concurrency: the Redis script never admits more than the limit.

1,000 concurrent attempts hit the limiter directly from threads (the atomic step is the subject); the
HTTP path is checked with fewer concurrent requests through the live server.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings

from apps.partner_api.ratelimit import MemoryLimiter, RedisLimiter


def _burst(limiter, key_id: str, attempts: int, *, limit: int, tokens: int = 0, tlimit: int = 10**9) -> int:
    def one(_: int) -> bool:
        return limiter.acquire(key_id, requests_limit=limit, tokens_limit=tlimit, tokens=tokens).admitted

    with ThreadPoolExecutor(max_workers=50) as pool:
        return sum(pool.map(one, range(attempts)))


@pytest.fixture
def redis_limiter():
    return RedisLimiter(settings.REDIS_URL, settings.VERITY_STREAM_PREFIX)


def test_a_thousand_concurrent_requests_admit_at_most_the_limit(redis_limiter):
    key_id = str(uuid.uuid4())
    assert _burst(redis_limiter, key_id, 1000, limit=100) == 100
    refused = redis_limiter.acquire(key_id, requests_limit=100, tokens_limit=10**9)
    assert not refused.admitted and refused.limited_by == "requests"
    assert 1 <= refused.retry_after_s <= 61
    assert refused.headers()["Retry-After"] == str(refused.retry_after_s)
    assert refused.headers()["x-ratelimit-remaining-requests"] == "0"


def test_token_budget_is_enforced_atomically_and_can_be_corrected(redis_limiter):
    key_id = str(uuid.uuid4())
    assert _burst(redis_limiter, key_id, 200, limit=10_000, tokens=100, tlimit=5_000) == 50
    refused = redis_limiter.acquire(key_id, requests_limit=10_000, tokens_limit=5_000, tokens=100)
    assert refused.limited_by == "tokens"
    redis_limiter.adjust_tokens(key_id, -1_000)  # the reservations were larger than the real usage
    assert _burst(redis_limiter, key_id, 50, limit=10_000, tokens=100, tlimit=5_000) == 10


def test_keys_do_not_share_budgets(redis_limiter):
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert _burst(redis_limiter, first, 20, limit=5) == 5
    assert _burst(redis_limiter, second, 20, limit=5) == 5


def test_the_embedded_limiter_is_as_strict():
    assert _burst(MemoryLimiter(), "k", 1000, limit=100) == 100


def test_concurrent_http_requests_admit_at_most_the_keys_limit(issue, live_server):
    key, _ = issue(requests_per_minute=10)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=60) as client, \
            ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: client.get("/v1/models"), range(40)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(429) == 30
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["Retry-After"]) >= 1
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "10"
