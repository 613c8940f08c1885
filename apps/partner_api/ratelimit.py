"""Per-key limits: requests/minute and tokens/minute over a sliding 60-second window, checked and
charged in ONE atomic step.

In services mode the step is a Lua script in Redis, so any number of web processes and threads sharing
a key can never admit more than its limit: Redis runs the script without interleaving. Usage is kept
in per-second buckets of a hash per key and counter (at most 60 fields), so the window slides a second
at a time and `Retry-After` says when enough old buckets drop out. Embedded mode (no Redis) runs the
same algorithm under a process lock.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from apps.core.singleton import process_singleton

WINDOW_S = 60

_LUA = """
local now = tonumber(redis.call('TIME')[1])
local cutoff = now - tonumber(ARGV[5])
local function usage(key)
  local flat = redis.call('HGETALL', key)
  local total, buckets, stale = 0, {}, {}
  for i = 1, #flat, 2 do
    local sec, n = tonumber(flat[i]), tonumber(flat[i + 1])
    if sec <= cutoff then table.insert(stale, flat[i])
    else total = total + n; table.insert(buckets, {sec, n}) end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  return total, buckets
end
local function wait_s(total, buckets, cost, limit)
  local need = total + cost - limit
  for _, b in ipairs(buckets) do
    need = need - b[2]
    if need <= 0 then return math.max(1, b[1] + tonumber(ARGV[5]) - now + 1) end
  end
  return tonumber(ARGV[5])
end
local rlimit, tlimit = tonumber(ARGV[1]), tonumber(ARGV[2])
local rcost, tcost = tonumber(ARGV[3]), tonumber(ARGV[4])
local rused, rbuckets = usage(KEYS[1])
local tused, tbuckets = usage(KEYS[2])
if rused + rcost > rlimit then
  return {0, 'requests', rused, tused, wait_s(rused, rbuckets, rcost, rlimit)}
end
if tcost > 0 and tused + tcost > tlimit then
  return {0, 'tokens', rused, tused, wait_s(tused, tbuckets, tcost, tlimit)}
end
if rcost > 0 then redis.call('HINCRBY', KEYS[1], now, rcost) end
if tcost > 0 then redis.call('HINCRBY', KEYS[2], now, tcost) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]) + 2)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]) + 2)
return {1, '', rused + rcost, tused + tcost, 0}
"""


@dataclass(frozen=True)
class Decision:
    admitted: bool
    limited_by: str  # "" when admitted, else "requests" | "tokens"
    requests_limit: int
    requests_used: int
    tokens_limit: int
    tokens_used: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers (plus Retry-After when refused)."""
        headers = {
            "x-ratelimit-limit-requests": str(self.requests_limit),
            "x-ratelimit-remaining-requests": str(max(0, self.requests_limit - self.requests_used)),
            "x-ratelimit-limit-tokens": str(self.tokens_limit),
            "x-ratelimit-remaining-tokens": str(max(0, self.tokens_limit - self.tokens_used)),
            "x-ratelimit-reset-requests": f"{self.retry_after_s if self.limited_by == 'requests' else 0}s",
            "x-ratelimit-reset-tokens": f"{self.retry_after_s if self.limited_by == 'tokens' else 0}s",
        }
        if not self.admitted:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class Limiter(Protocol):
    def acquire(self, key_id: str, *, requests_limit: int, tokens_limit: int, requests: int = 1,
                tokens: int = 0) -> Decision: ...

    def adjust_tokens(self, key_id: str, delta: int) -> None: ...


class RedisLimiter:
    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._script = self._client.register_script(_LUA)
        self._prefix = prefix

    def _keys(self, key_id: str) -> list[str]:
        # One hash tag per key keeps both counters on one cluster slot.
        return [f"{self._prefix}rl:{{{key_id}}}:req", f"{self._prefix}rl:{{{key_id}}}:tok"]

    def acquire(self, key_id: str, *, requests_limit: int, tokens_limit: int, requests: int = 1,
                tokens: int = 0) -> Decision:
        ok, limited_by, rused, tused, wait = self._script(
            keys=self._keys(key_id), args=[requests_limit, tokens_limit, requests, tokens, WINDOW_S])
        return Decision(bool(ok), limited_by or "", requests_limit, int(rused), tokens_limit, int(tused), int(wait))

    def adjust_tokens(self, key_id: str, delta: int) -> None:
        """Replace a reservation by the real count once a generation is done (delta may be negative)."""
        if delta:
            key = self._keys(key_id)[1]
            pipe = self._client.pipeline(transaction=True)
            pipe.hincrby(key, str(int(time.time())), int(delta))
            pipe.expire(key, WINDOW_S + 2)
            pipe.execute()


class MemoryLimiter:
    """The same sliding window for the embedded mode (one process; a lock makes each step atomic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], dict[int, int]] = {}

    def _usage(self, key: tuple[str, str], now: int) -> tuple[int, list[tuple[int, int]]]:
        buckets = self._buckets.setdefault(key, {})
        for sec in [s for s in buckets if s <= now - WINDOW_S]:
            del buckets[sec]
        return sum(buckets.values()), sorted(buckets.items())

    @staticmethod
    def _wait(total: int, buckets: list[tuple[int, int]], cost: int, limit: int, now: int) -> int:
        need = total + cost - limit
        for sec, count in buckets:
            need -= count
            if need <= 0:
                return max(1, sec + WINDOW_S - now + 1)
        return WINDOW_S

    def acquire(self, key_id: str, *, requests_limit: int, tokens_limit: int, requests: int = 1,
                tokens: int = 0) -> Decision:
        now = int(time.time())
        with self._lock:
            rused, rb = self._usage((key_id, "req"), now)
            tused, tb = self._usage((key_id, "tok"), now)
            if rused + requests > requests_limit:
                wait = self._wait(rused, rb, requests, requests_limit, now)
                return Decision(False, "requests", requests_limit, rused, tokens_limit, tused, wait)
            if tokens > 0 and tused + tokens > tokens_limit:
                wait = self._wait(tused, tb, tokens, tokens_limit, now)
                return Decision(False, "tokens", requests_limit, rused, tokens_limit, tused, wait)
            req = self._buckets[(key_id, "req")]
            tok = self._buckets[(key_id, "tok")]
            req[now] = req.get(now, 0) + requests
            if tokens:
                tok[now] = tok.get(now, 0) + tokens
        return Decision(True, "", requests_limit, rused + requests, tokens_limit, tused + tokens, 0)

    def adjust_tokens(self, key_id: str, delta: int) -> None:
        now = int(time.time())
        with self._lock:
            tok = self._buckets.setdefault((key_id, "tok"), {})
            tok[now] = tok.get(now, 0) + int(delta)


@process_singleton
def limiter() -> Limiter:
    """The process's limiter: Redis in services mode, in-memory in embedded mode."""
    if settings.VERITY_MODE == "services":
        return RedisLimiter(settings.REDIS_URL, settings.VERITY_STREAM_PREFIX)
    return MemoryLimiter()


def limiter_reset(new: Any = None) -> None:
    """Forget (or replace) the process's limiter; tests switch modes."""
    limiter.reset(new)
