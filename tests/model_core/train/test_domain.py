"""Rejection sampling keeps only what the filter accepts; held-out splits keep phrasings together."""

from __future__ import annotations

from model_core.train.domain import load_domain_examples, rejection_sample, rl_prompts, split_heldout


def test_rejection_sampling_keeps_only_accepted_completions(tiny, renderer, packs) -> None:
    source = load_domain_examples(packs)[:3]
    prompts = rl_prompts(renderer, source, packs)
    eos = tiny.tokenizer.eos_token_id
    seen = []

    def accept_all(meta, text):
        seen.append(meta["domain"])
        return True

    # A random model rarely stops within 6 tokens, so force stopping by treating every token as a stop.
    every_token = list(range(tiny.config.vocab_size))
    kept = rejection_sample(tiny.model, renderer, prompts, source, accept_all, samples=2, max_new_tokens=6,
                            stop_ids=every_token)
    assert len(kept) == 3 and all(k.meta["source"] == "rejection-sampling" for k in kept)
    assert [k.messages for k in kept] == [s.messages for s in source]
    assert rejection_sample(tiny.model, renderer, prompts, source, lambda m, t: False, samples=2,
                            max_new_tokens=6, stop_ids=[eos]) == []


def test_heldout_split_keeps_every_phrasing_of_a_prompt_on_one_side(packs) -> None:
    train, held = split_heldout(load_domain_examples(packs, variants=3))
    assert held and train
    assert not {e.meta["base_prompt"] for e in train} & {e.meta["base_prompt"] for e in held}
