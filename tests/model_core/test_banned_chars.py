"""`SamplingParams.banned_chars`: characters the engine never writes (the chat masks `@`, so that the
output stage may release a word's first letters with its first token; see apps/safety/partial.py)."""

from __future__ import annotations

import pytest
import torch

from model_core import Engine, SamplingParams
from model_core.sampling import Sampler, ban_processor

# Prompts after which the bundled model writes an email address (checked below without the ban, so the
# ban's test can fail).
EMAIL_PROMPTS = ["For questions, email our support team at support", "Contact: John Smith, john.smith"]


@pytest.mark.parametrize("value", ["é", "@\u00a0", 5, None])
def test_banned_chars_must_be_an_ascii_string(value):
    with pytest.raises(ValueError, match="banned_chars"):
        SamplingParams(banned_chars=value)


def test_ban_processor_masks_exactly_its_ids():
    logits = torch.arange(10, dtype=torch.float32)
    out = Sampler(SamplingParams(greedy=True), [ban_processor(torch.tensor([9, 8]))]).process(logits, [])
    assert torch.isneginf(out[[8, 9]]).all()
    assert torch.equal(out[:8], logits[:8])
    assert Sampler(SamplingParams(greedy=True), [ban_processor(torch.tensor([9, 8]))]).sample(logits, []) == 7


@pytest.fixture(scope="module")
def smollm2_int8(smollm2_gguf):
    return Engine.load(smollm2_gguf, profile="r1", quantize="int8", progress=False)


def test_banned_token_ids_are_every_token_holding_the_character(smollm2_int8):
    engine = smollm2_int8
    ids = engine._banned_token_ids("@")
    assert len(ids) > 0
    for tid in range(len(engine.tokenizer.backend.get_vocab())):
        text = engine.tokenizer.decode([tid])
        if "@" in text and tid not in engine.stop_token_ids:
            assert tid in ids.tolist(), (tid, text)
    assert all("@" in engine.tokenizer.decode([int(t)]) for t in ids)


def test_the_engine_never_writes_a_banned_character(smollm2_int8):
    engine = smollm2_int8
    prompts = [engine.tokenizer.encode(p) for p in EMAIL_PROMPTS]
    free = engine.generate(prompts, SamplingParams(max_tokens=12, greedy=True))
    assert all("@" in r.text for r in free), [r.text for r in free]  # the model does write emails here
    # Batched (both prompts in one continuous batch), alone, and sampled.
    banned = engine.generate(prompts, SamplingParams(max_tokens=12, greedy=True, banned_chars="@"))
    alone = [engine.generate([p], SamplingParams(max_tokens=12, greedy=True, banned_chars="@"))[0] for p in prompts]
    sampled = engine.generate(prompts * 3, SamplingParams(max_tokens=12, temperature=1.5, seed=3, banned_chars="@"))
    for result in [*banned, *alone, *sampled]:
        assert "@" not in result.text, result.text
        assert result.finish_reason == "length"
    assert [r.token_ids for r in banned] == [r.token_ids for r in alone]
    # Streaming, and alongside structured output (the ban runs before the constraint).
    events = list(engine.stream(prompts[0], SamplingParams(max_tokens=12, greedy=True, banned_chars="@")))
    assert "@" not in "".join(e.text for e in events if e.kind in ("answer", "reasoning"))
    schema = {"type": "json_schema", "json_schema": {"schema": {
        "type": "object", "properties": {"email": {"type": "string", "maxLength": 20}}, "required": ["email"]}}}
    constrained = engine.generate([[{"role": "user", "content": "Give the email address john@example.com as JSON."}]],
                                  SamplingParams(max_tokens=40, greedy=True, banned_chars="@",
                                                 response_format=schema))[0]
    assert "@" not in constrained.text
