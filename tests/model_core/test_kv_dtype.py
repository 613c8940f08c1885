"""The dtype R1 stores keys/values in (`Engine.load(kv_dtype=...)`; bfloat16 by default for int8
engines, half the KV memory). Attention always reads K/V after the same rounding, whether they were
just computed, come from the decode pool or from the prefix cache, so issue 4's checks 1 and 2 still
hold for an int8 engine: batched requests give the tokens they give alone, and the prefix cache on
gives the tokens it gives off. References: the same engine one request at a time, the same engine
with the cache off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_core import Engine, SamplingParams
from model_core.kv_cache import KVCache

ROOT = Path(__file__).resolve().parents[2]
SMOLLM2 = ROOT / "var/models/smollm2-135m-instruct"
GREEDY = SamplingParams(max_tokens=12, greedy=True)


def test_int8_engines_store_bfloat16_keys_and_values_and_others_their_own_dtype(checkpoints):
    int8 = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, quantize="int8")
    fp = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False)
    asked = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, quantize="int8",
                        kv_dtype="float32")
    zero = Engine.load(checkpoints["llama-untied"], profile="zero", progress=False)
    assert int8.info["kv_dtype"] == "bfloat16" and int8.scheduler.pool.dtype == torch.bfloat16
    assert fp.info["kv_dtype"] == "float32" and asked.info["kv_dtype"] == "float32"
    assert zero.info["kv_dtype"] is None  # Zero keeps no cache
    with pytest.raises(ValueError, match="kv_dtype"):
        Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, kv_dtype="int4")

    prompt = [1000 + 7 * i for i in range(70)]  # two full 32-token blocks for the prefix cache
    kv_bytes = {}
    for name, engine in (("int8", int8), ("asked", asked)):
        events = engine.stream(prompt, SamplingParams(max_tokens=8, greedy=True))
        next(e for e in events if e.token_ids)  # decoding now: the pool holds the sequence
        kv_bytes[name] = engine.metrics()["kv_bytes"]
        list(events)
    assert kv_bytes["int8"] * 2 == kv_bytes["asked"] > 0
    blocks = int8.scheduler.prefix_cache.lookup(prompt, len(prompt))
    assert blocks and all(b.keys.dtype == b.values.dtype == torch.bfloat16 for b in blocks)


def test_attention_reads_the_stored_rounding_however_the_prompt_is_chunked(checkpoints):
    """One prefill pass and two chunks through a bfloat16 cache give the same logits: the first chunk's
    keys are read back from the cache in both, never in their unrounded float32 form."""
    engine = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False)
    model, ids = engine.model, torch.tensor([[1000 + 13 * i for i in range(24)]])
    with torch.inference_mode():
        whole = model(ids, torch.arange(24)[None], KVCache(engine.config, 24, dtype=torch.bfloat16))
        cache = KVCache(engine.config, 24, dtype=torch.bfloat16)
        model(ids[:, :10], torch.arange(10)[None], cache)
        parts = model(ids[:, 10:], torch.arange(10, 24)[None], cache)
        unrounded = model(ids, torch.arange(24)[None])
    torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-4)
    assert not torch.equal(whole, unrounded)  # the rounding is real: the cache changed the numbers


def test_int8_engine_prefix_cache_on_gives_the_tokens_of_cache_off(checkpoints):
    on = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False, quantize="int8")
    off = Engine.load(checkpoints["qwen2-r1"], profile="r1", progress=False, quantize="int8", prefix_cache=False)
    assert on.info["kv_dtype"] == "bfloat16"
    shared = [3000 + (i * 11) % 4000 for i in range(150)]
    prompts = [shared + [100 + j, 200 + j, 300 + j] for j in range(4)] + [shared[:64], shared[:97] + [5]]
    got = [on.generate([p], GREEDY)[0].token_ids for p in prompts]  # one by one: each can hit the last
    assert got == [r.token_ids for r in off.generate(prompts, GREEDY)]
    assert on.metrics()["prefix_cache"]["hits"] >= 3 * (150 // 32)
    turn = prompts[0] + got[0] + [400, 401]  # the next turn starts with blocks cached at retirement
    assert on.generate([turn], GREEDY)[0].token_ids == off.generate([turn], GREEDY)[0].token_ids


def test_int8_engine_batched_requests_give_the_tokens_they_give_alone(checkpoints):
    engine = Engine.load(checkpoints["llama-untied"], profile="r1", progress=False, quantize="int8",
                         prefix_cache=False, max_running=4)
    prompts = [[2000 + 17 * i + j for i in range(n)] for j, n in enumerate((5, 23, 40, 71))]
    alone = [engine.generate([p], GREEDY)[0].token_ids for p in prompts]
    assert [r.token_ids for r in engine.generate(prompts, GREEDY)] == alone


@pytest.fixture(scope="module")
def smollm2_int8() -> Engine:
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip("the bundled SmolLM2 is not converted (make run / prepare-bundled)")
    # the default budget (512): batched, the sixteen prompts share prefill steps; the scheduler cuts them
    # only at fixed positions, so each prompt's prefill is computed as it is alone (see the xfail below)
    return Engine.load(SMOLLM2, profile="r1", progress=False, quantize="int8", prefix_cache=False)


@pytest.mark.slow
def test_sixteen_greedy_int8_requests_batched_equal_one_by_one(smollm2_int8):
    """Issue 4 check 1 on the int8 SmolLM2 (bfloat16 KV), as test_scheduler checks it in float32."""
    from test_scheduler import assert_sixteen_batched_equal_one_by_one

    assert smollm2_int8.info["kv_dtype"] == "bfloat16"
    assert_sixteen_batched_equal_one_by_one(smollm2_int8, GREEDY)


@pytest.mark.slow
# Seen on AVX-512 CPUs (the VMs of sessions 1-4); on an AVX2-only CPU the same kernels give the chunks and the
# whole prompt the same logits (session 5's VM), so there the test runs as a plain test and must pass.
@pytest.mark.xfail(torch.backends.cpu.get_cpu_capability() != "AVX2", strict=True,
                   reason="a property of the kernels, independent of the KV dtype (float32 KV too): "
                   "torch's fused CPU attention rounds a prompt split into chunks differently from the whole prompt "
                   "(float32 rounding), and the int8 kernel's bfloat16 activations amplify that to ~0.3 in the "
                   "logits; with attention='reference' the chunks and the whole agree bit for bit. This is why the "
                   "scheduler cuts prompts only at fixed positions (model_core/scheduler.py, step 4)")
def test_int8_prefill_split_into_chunks_gives_the_logits_of_one_piece(smollm2_int8):
    engine = smollm2_int8
    ids = engine.tokenizer.encode("Compound interest means that interest is earned on the interest already "
                                  "earned, so savings grow faster the longer they are left alone.")
    n, cut = len(ids), len(ids) // 2
    with torch.inference_mode():
        whole = engine.model(torch.tensor([ids]), torch.arange(n)[None], KVCache(engine.config, n))[0, -1]
        cache = KVCache(engine.config, n)
        engine.model(torch.tensor([ids[:cut]]), torch.arange(cut)[None], cache)
        parts = engine.model(torch.tensor([ids[cut:]]), torch.arange(cut, n)[None], cache)[0, -1]
    assert torch.equal(parts, whole)
