"""The evaluation's batched greedy generation gives each prompt what it gets decoded alone."""

from __future__ import annotations

from model_core.train.evaluate import greedy_batch
from model_core.train.rollout import sample_group


def test_batched_greedy_equals_one_by_one(tiny, renderer) -> None:
    # Prompts of very different lengths, so the short ones sit behind many pad slots.
    questions = ["Hi.", "What is an index fund and how does it spread risk over many companies?",
                 "Can my landlord keep my deposit?", "What does a cholesterol test measure, and how often "
                 "should an adult have one if nobody in the family has heart disease?"]
    prompts = [renderer.prompt_ids([{"role": "user", "content": q}]) for q in questions]
    assert len({len(p) for p in prompts}) == len(prompts)
    stop = [tiny.tokenizer.eos_token_id]
    batched = greedy_batch(tiny.model, prompts, 24, stop)
    alone = [sample_group(tiny.model, p, 1, 24, stop_ids=stop, temperature=0)[0][0] for p in prompts]
    assert batched == alone
    assert all(len(b) > 0 for b in batched)

