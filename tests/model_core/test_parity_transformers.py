"""Numerical parity with transformers (the reference) on random-weight Qwen2 and Llama checkpoints.

Covers q/k/v bias, llama3 RoPE scaling, tied and untied embeddings, sharded safetensors and the
151,936-token vocabulary of R1-Distill-Qwen: last-position logits within 1e-4 in float32 for prompts
of 1, 17 and 300 tokens, and identical 64-token greedy continuations for both profiles.
"""

from __future__ import annotations

import pytest
import torch

from model_core import Engine, SamplingParams
from model_core.kv_cache import KVCache
from tests.model_core.conftest import CHECKPOINTS

PROMPT_LENGTHS = (1, 17, 300)


def _reference(path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return model.eval()


def _prompt(length: int, vocab: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, min(vocab, 100_000), (length,), generator=g).tolist()


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS))
def pair(request, checkpoints):
    path = checkpoints[request.param]
    return request.param, _reference(path), Engine.load(path, profile="r1", progress=False), \
        Engine.load(path, profile="zero", progress=False)


def test_last_position_logits_match_transformers(pair):
    name, ref, r1, zero = pair
    for length in PROMPT_LENGTHS:
        ids = _prompt(length, r1.config.vocab_size, seed=length)
        x = torch.tensor([ids])
        pos = torch.arange(length)[None]
        with torch.inference_mode():
            expected = ref(x).logits[0, -1]
            full = zero.model(x, pos, None, attention="reference")[0, -1]
            cache = KVCache(r1.config, length)
            cached = r1.model(x, pos, cache, attention="sdpa")[0, -1]
        assert (full - expected).abs().max().item() <= 1e-4, f"{name}: reference path, {length} tokens"
        assert (cached - expected).abs().max().item() <= 1e-4, f"{name}: sdpa path, {length} tokens"


def test_cached_decode_step_matches_full_forward(pair):
    """The R1 path's one-token steps over a cache give the reference's logits for the whole sequence."""
    name, ref, r1, _zero = pair
    ids = _prompt(40, r1.config.vocab_size, seed=7)
    cache = KVCache(r1.config, 40)
    with torch.inference_mode():
        r1.model(torch.tensor([ids[:30]]), torch.arange(30)[None], cache)
        for i in range(30, 40):
            step = r1.model(torch.tensor([[ids[i]]]), torch.tensor([[i]]), cache)[0, -1]
        chunk_cache = KVCache(r1.config, 40)  # chunked prefill: a second multi-token chunk over a cache
        r1.model(torch.tensor([ids[:25]]), torch.arange(25)[None], chunk_cache)
        chunked = r1.model(torch.tensor([ids[25:]]), torch.arange(25, 40)[None], chunk_cache)[0, -1]
        expected = ref(torch.tensor([ids])).logits[0, -1]
    assert (step - expected).abs().max().item() <= 1e-4, name
    assert (chunked - expected).abs().max().item() <= 1e-4, name


def test_greedy_continuations_match_transformers(pair):
    name, ref, r1, zero = pair
    prompt = _prompt(17, r1.config.vocab_size, seed=3)
    with torch.inference_mode():
        out = ref.generate(torch.tensor([prompt]), max_new_tokens=64, do_sample=False,
                           attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    expected = out[0, len(prompt):].tolist()
    params = SamplingParams(max_tokens=64, greedy=True)
    [fast] = r1.generate([prompt], params)
    [slow] = zero.generate([prompt], params)
    assert fast.token_ids == expected, f"{name}: R1 profile diverged from transformers"
    assert slow.token_ids == expected, f"{name}: Zero profile diverged from transformers"
    assert fast.usage == {"prompt_tokens": 17, "completion_tokens": len(expected), "total_tokens": 17 + len(expected)}
