"""Prefix cache (issue 4, check 2): a request sharing a long prefix with an earlier one starts much
sooner and gives the same tokens as with the cache off; the cache itself keys blocks by the whole
prefix, evicts least recently used blocks under its byte budget, and counts hits and misses.
The reference is the same engine with the cache switched off (STYLE item 11: cached vs uncached).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_core import Engine, SamplingParams
from model_core.prefix_cache import PrefixCache

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = ROOT / "var/models/smollm2-135m-instruct"
L, HKV, D = 2, 1, 4  # a toy KV shape for the unit tests


def kv(tokens: int, fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.arange(tokens, dtype=torch.float32).view(1, 1, tokens, 1).expand(L, HKV, tokens, D) + fill
    return k.contiguous(), (k + 0.5).contiguous()


def test_lookup_returns_the_longest_cached_prefix_block_by_block():
    cache = PrefixCache(block_size=4)
    tokens = list(range(100, 110))  # 2 full blocks and a partial one
    assert cache.insert(tokens, *kv(10)) == 2
    blocks = cache.lookup(tokens + [7, 8], limit=12)
    assert [b.tokens for b in blocks] == [tuple(tokens[:4]), tuple(tokens[4:8])]
    assert torch.equal(blocks[1].keys, kv(10)[0][:, :, 4:8])
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 1  # the third block was not cached


def test_a_block_is_keyed_by_everything_before_it():
    cache = PrefixCache(block_size=4)
    cache.insert([1, 2, 3, 4, 5, 6, 7, 8], *kv(8))
    # the same second block after a different first block is another prefix: no hit at all
    assert cache.lookup([9, 2, 3, 4, 5, 6, 7, 8], limit=8) == []
    # the limit keeps at least the tokens the caller must compute
    assert len(cache.lookup([1, 2, 3, 4, 5, 6, 7, 8], limit=7)) == 1


def test_lru_eviction_under_the_byte_budget_keeps_roots_of_used_chains():
    one_block = 2 * L * HKV * 4 * D * 4
    cache = PrefixCache(block_size=4, budget_bytes=3 * one_block)
    a = [1, 1, 1, 1, 2, 2, 2, 2]
    b = [5, 5, 5, 5, 6, 6, 6, 6]
    cache.insert(a, *kv(8))
    cache.insert(b, *kv(8))  # 4 blocks > budget of 3: the least recently used one goes
    assert cache.stats()["bytes"] <= 3 * one_block and cache.stats()["evictions"] == 1
    assert len(cache.lookup(b, limit=8)) == 2  # the newest chain is whole
    assert len(cache.lookup(a, limit=8)) == 1  # of the older one, the leaf went and the root stayed


def test_zero_budget_caches_nothing():
    cache = PrefixCache(block_size=4, budget_bytes=0)
    assert cache.insert(list(range(16)), *kv(16)) == 0 and len(cache) == 0
    with pytest.raises(ValueError, match="block_size"):
        PrefixCache(block_size=0)


def test_cached_and_uncached_engines_agree_on_shared_prefixes(checkpoints):
    on = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False)
    off = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False, prefix_cache=False)
    params = SamplingParams(max_tokens=12, greedy=True)
    shared = [3000 + (i * 11) % 4000 for i in range(150)]
    prompts = [shared + [100 + j, 200 + j, 300 + j] for j in range(4)] + [shared[:64], shared[:97] + [5]]
    got = [on.generate([p], params)[0].token_ids for p in prompts]  # one by one: each can hit the last
    assert got == [r.token_ids for r in off.generate(prompts, params)]
    stats = on.metrics()["prefix_cache"]
    assert stats["hits"] >= 3 * (150 // 32) and stats["bytes"] > 0
    # a conversation's next turn starts with the previous prompt and reply: those blocks are cached too
    turn = prompts[0] + got[0] + [400, 401]
    before = on.metrics()["prefix_cache"]["hits"]
    assert on.generate([turn], params)[0].token_ids == off.generate([turn], params)[0].token_ids
    cached = len(prompts[0]) + len(got[0]) - 1  # the last sampled token never went through the model
    assert on.metrics()["prefix_cache"]["hits"] - before == min(len(turn) - 1, cached) // 32


@pytest.fixture(scope="module")
def smollm2() -> Engine:
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip("the bundled SmolLM2 is not converted (make run / prepare-bundled)")
    return Engine.load(SMOLLM2, profile="r1", progress=False)


@pytest.mark.slow
def test_shared_1500_token_prefix_first_token_five_times_sooner(smollm2):
    text = " ".join(f"Clause {i}: the adviser shall act in the client's best interest and disclose fees."
                    for i in range(200))
    prefix = smollm2.tokenizer.encode(text)[:1500]
    assert len(prefix) == 1500
    params = SamplingParams(max_tokens=6, greedy=True)
    questions = [smollm2.tokenizer.encode(f" Question {q}: what must the adviser disclose?") for q in range(4)]
    sched = smollm2.scheduler
    cache = sched.prefix_cache

    def first_token_s(prompt: list[int]) -> tuple[float, list[int]]:
        finish = None
        ids: list[int] = []
        for event in smollm2.stream(prompt, params):
            ids.extend(event.token_ids)
            finish = event
        return finish.timings["ttft_s"], ids

    try:
        sched.prefix_cache = None  # the reference: the same engine with the cache off
        off = [first_token_s(prefix + q) for q in questions[1:3]]
        sched.prefix_cache = cache
        first_token_s(prefix + questions[0])  # the first request fills the cache
        on = [first_token_s(prefix + q) for q in questions[1:3]]
    finally:
        sched.prefix_cache = cache
    assert [ids for _, ids in on] == [ids for _, ids in off]
    fastest_off, fastest_on = min(t for t, _ in off), min(t for t, _ in on)
    assert fastest_off >= 5 * fastest_on, (fastest_off, fastest_on)
