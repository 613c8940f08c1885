"""The domain data: SFT examples with readable reasoning, preference pairs, RL prompts, rejection sampling.

`data/sft_<domain>.jsonl` holds examples written for this pipeline: `kind` (answer | refuse |
escalate), `prompt`, a short `reasoning`, and either the `answer` text or the name of the pack's
`refusal` / `escalation` text to give. The final reply is assembled from the pack, so a compliance
edit of a disclaimer or crisis text flows into the next training run: answers and escalations end
with the pack's disclaimer, refusals are the pack's refusal text.

Preference pairs contrast each reference reply with a corrupted one (disclaimer dropped, reasoning
format broken, the wrong behaviour: refusing a benign question, complying with a harmful one or
missing an escalation, or a forbidden claim added). Rejection sampling (the R1 recipe's stage 3)
samples a model on the training prompts and keeps only completions a filter accepts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from model_core.train.data import ChatExample, ChatRenderer
from model_core.train.packs import Pack, PackDataError
from model_core.train.reward_model import PreferencePair
from model_core.train.rewards import parse_completion
from model_core.train.rl import RLPrompt
from model_core.train.rollout import rollout

DATA_DIR = Path(__file__).resolve().parent / "data"
# Rephrasings of the same request: cheap variety so the model keys on content, not on one wording.
PROMPT_VARIANTS = ("{p}", "Quick question: {p}", "Hi Verity, {p}", "I was wondering, {p}")
COMPLIANCE = "Sure, here is how to do that step by step. First, get everything ready, then follow the plan closely."
# Every training reasoning opens with its decision, so the branch (answer, refuse, escalate) is the first
# thing the model writes, not one choice buried a few tokens into a rationale that the loss hardly
# weighs. Worded unlike any rationale, so greedy decoding cannot loop on an echo of it.
DECISION = {"answer": "This is a safe question that I can answer.",
            "refuse": "This request could cause harm, so I will not help with it.",
            "escalate": "This needs urgent human help before anything else."}
FORBIDDEN = {"finance": "This is a guaranteed return with no risk.", "medical": "I am a doctor and I can confirm this.",
             "legal": "I am your lawyer, so you can rely on this as legal advice."}


def _variant(prompt: str, template: str) -> str:
    if template == "{p}":
        return prompt
    return template.format(p=prompt[0].lower() + prompt[1:])


def _reply(row: dict[str, Any], pack: Pack, where: str) -> tuple[str, str | None]:
    """The reference reply of one data row, assembled from its pack."""
    kind = row.get("kind")
    try:
        if kind == "answer":
            return f"{row['answer']}\n\n{pack.disclaimer}", None
        if kind == "refuse":
            return pack.refusals[row["refusal"]], row["refusal"]
        if kind == "escalate":
            return f"{pack.escalations[row['escalation']]}\n\n{pack.disclaimer}", row["escalation"]
        raise KeyError(f"kind {kind!r}")
    except KeyError as exc:
        raise PackDataError(f"{where}: unknown or missing field {exc}") from exc


def _reasoning(row: dict[str, Any], domain: str) -> str:
    """The decision sentence, the row's rationale and, for an escalation, which pack text follows.

    The escalation texts differ by pack (each pack's approved crisis wording), but the rationales
    ("Suicidal ideation. Crisis resources first.") do not; naming the domain and the text at the end
    of the reasoning puts that choice right before the text, instead of leaving it to the system
    header hundreds of tokens back (session 11: the legal crisis text written in finance chats)."""
    text = f"{DECISION[row['kind']]} {row['reasoning']}"
    if row["kind"] == "escalate":
        text += f" In this {domain} chat I open with the {domain} {row['escalation']} message."
    return text


def load_domain_examples(packs: dict[str, Pack], data_dir: Path = DATA_DIR, variants: int = 1,
                         escalate_weight: float = 1.0) -> list[ChatExample]:
    """Every domain's examples, each in `variants` phrasings (1..4), then the general refusals of
    `sft_general.jsonl` (each under the header of the domain its line names, in its own phrasing).
    `escalate_weight` is the loss weight of the escalation examples (`meta["loss_weight"]`): the
    crisis texts are few rows among many answers and refusals."""
    if not 1 <= variants <= len(PROMPT_VARIANTS):
        raise ValueError(f"variants must be in 1..{len(PROMPT_VARIANTS)}, got {variants}")
    rows: list[tuple[str, dict[str, Any], str, int]] = []  # (domain, row, where, variants)
    for domain in packs:
        path = Path(data_dir) / f"sft_{domain}.jsonl"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                rows.append((domain, json.loads(line), f"{path}:{n}", variants))
    general = Path(data_dir) / "sft_general.jsonl"
    if general.is_file():
        for n, line in enumerate(general.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                if row.get("domain") not in packs:
                    raise PackDataError(f"{general}:{n}: unknown domain {row.get('domain')!r}")
                rows.append((row["domain"], row, f"{general}:{n}", 1))
    out = []
    for domain, row, where, count in rows:
        pack = packs[domain]
        reply, key = _reply(row, pack, where)
        meta: dict[str, Any] = {"domain": domain, "kind": row["kind"], "key": key, "base_prompt": row["prompt"],
                                "rationale": row["reasoning"]}
        if row["kind"] == "escalate" and escalate_weight != 1.0:
            meta["loss_weight"] = escalate_weight
        for template in PROMPT_VARIANTS[:count]:
            messages = [{"role": "system", "content": pack.header},
                        {"role": "user", "content": _variant(row["prompt"], template)}]
            out.append(ChatExample(messages, _reasoning(row, domain), reply, dict(meta)))
    return out


def load_decision_examples(packs: dict[str, Pack], data_dir: Path = DATA_DIR,
                           refuse_weight: float = 1.0) -> list[ChatExample]:
    """`sft_decisions.jsonl`: prompts whose target is only the opening decision sentence (answer or
    refuse), under the header of the domain each line names; `meta["decision_only"]` tells the
    renderer to stop the completion there (no answer, no end of turn). Built from the input
    classifier's authored corpus by `scripts/build_sft_decisions.py`; empty when the file is absent.

    `refuse_weight` scales the loss on the refuse decisions (`meta["loss_weight"]`): a weighted
    cross-entropy moves the model's prior between the two decisions by about log(weight) nats
    without changing how it ranks prompts."""
    path = Path(data_dir) / "sft_decisions.jsonl"
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("domain") not in packs or row.get("kind") not in ("answer", "refuse"):
            raise PackDataError(f"{path}:{n}: needs a known domain and kind answer|refuse, got {row}")
        messages = [{"role": "system", "content": packs[row["domain"]].header},
                    {"role": "user", "content": row["prompt"]}]
        out.append(ChatExample(messages, DECISION[row["kind"]], "",
                               {"domain": row["domain"], "kind": row["kind"], "key": None,
                                "base_prompt": row["prompt"], "decision_only": True,
                                "loss_weight": refuse_weight if row["kind"] == "refuse" else 1.0}))
    return out


def _first_sentences(text: str, words: int = 16) -> str:
    """Whole sentences from the start of `text` until they hold at least `words` words."""
    out: list[str] = []
    for sentence in text.replace(". ", ".\n").splitlines():
        out.append(sentence)
        if len(" ".join(out).split()) >= words:
            break
    return " ".join(out)


def escalation_openings(examples: Sequence[ChatExample], packs: dict[str, Pack],
                        keys: Sequence[str] = ("crisis",)) -> list[ChatExample]:
    """Short examples for the escalations every pack has (`keys`): each escalation example's user
    message under every domain's header, its target the escalation reasoning naming that domain and
    the first sentences of that domain's text (at least 16 words, past the 12 the scorer reads), with
    no end of turn (`meta["open_ended"]`).

    Which pack's crisis text the model writes is a choice of its first few tokens, one position in a
    ~90-token reply; these put many cheap examples on exactly that choice, the same prompt with three
    texts under three headers (session 13: 60 steps of them on the shipped adapter took the crisis
    cases escalated with their own pack's text from 7 to 11 of 12, `benchmarks/RESULTS.md`)."""
    missing = [k for k in keys if not all(k in p.escalations for p in packs.values())]
    if missing:
        raise PackDataError(f"escalation openings {missing}: every pack needs each key")
    out = []
    for e in examples:
        key = e.meta.get("key")
        if e.meta.get("kind") != "escalate" or key not in keys:
            continue
        for domain, pack in packs.items():
            reasoning = _reasoning({"kind": "escalate", "reasoning": e.meta["rationale"], "escalation": key}, domain)
            messages = [{"role": "system", "content": pack.header}, *e.messages[1:]]
            out.append(ChatExample(messages, reasoning, _first_sentences(pack.escalations[key]),
                                   {"domain": domain, "kind": "escalate", "key": key,
                                    "base_prompt": e.meta["base_prompt"], "open_ended": True}))
    return out


def split_heldout(examples: Sequence[ChatExample], every: int = 5) -> tuple[list[ChatExample], list[ChatExample]]:
    """Hold out every `every`-th base prompt (all its phrasings together, so nothing leaks)."""
    prompts = sorted({e.meta["base_prompt"] for e in examples})
    held = set(prompts[::every])
    return ([e for e in examples if e.meta["base_prompt"] not in held],
            [e for e in examples if e.meta["base_prompt"] in held])


def _corruptions(example: ChatExample, packs: dict[str, Pack]) -> list[tuple[str, str]]:
    """(reasoning, reply) pairs that are worse than the reference reply, most telling first."""
    pack = packs[example.meta["domain"]]
    kind, reply = example.meta["kind"], example.answer
    out = []
    if kind == "answer":
        out.append((example.reasoning, pack.refusals["default"]))
    elif kind == "refuse":
        out.append(("The user asked for help, so I will help.", COMPLIANCE))
    else:
        out.append(("The user has a general question.", "Here is some general information about your situation."))
    if pack.disclaimer in reply:
        out.append((example.reasoning, reply.replace(pack.disclaimer, "").strip()))
    out.append((example.reasoning, f"{FORBIDDEN[example.meta['domain']]} {reply}"))
    out.append(("", reply))  # no reasoning: the format rule fails
    return out


def preference_pairs(renderer: ChatRenderer, examples: Sequence[ChatExample], packs: dict[str, Pack],
                     per_example: int = 2) -> list[PreferencePair]:
    tok = renderer.tokenizer
    pairs = []
    for i, ex in enumerate(examples):
        prompt = renderer.prompt_ids(ex.messages)
        chosen = tok.encode(renderer.completion_text(ex.reasoning, ex.answer) + renderer.end_of_turn,
                            add_special_tokens=False)
        options = _corruptions(ex, packs)
        for k in range(per_example):
            reasoning, reply = options[(i + k) % len(options)]
            text = renderer.completion_text(reasoning, reply) if reasoning else reply
            pairs.append(PreferencePair(prompt, chosen, tok.encode(text + renderer.end_of_turn, add_special_tokens=False)))
    return pairs


def rl_prompts(renderer: ChatRenderer, examples: Sequence[ChatExample], packs: dict[str, Pack]) -> list[RLPrompt]:
    """One RL prompt per example, carrying what the rule rewards need to judge its completions."""
    out = []
    for ex in examples:
        ids = renderer.prompt_ids(ex.messages)
        out.append(RLPrompt(ids, {**ex.meta, "pack": packs[ex.meta["domain"]], "prompt_ids": ids}))
    return out


def rejection_sample(model: nn.Module, renderer: ChatRenderer, prompts: Sequence[RLPrompt], source: Sequence[ChatExample],
                     accept: Callable[[dict[str, Any], str], bool], *, samples: int, max_new_tokens: int,
                     stop_ids: Sequence[int], temperature: float = 0.7, seed: int = 0) -> list[ChatExample]:
    """Sample `samples` completions per prompt; keep at most one accepted completion per prompt as a
    new SFT example (`source[i]` gives prompt i's messages and metadata)."""
    kept = []
    for i, (prompt, ex) in enumerate(zip(prompts, source, strict=True)):
        group = rollout(model, renderer.tokenizer, prompt.ids, samples, max_new_tokens, stop_ids=stop_ids,
                        temperature=temperature, seed=seed + i, meta=prompt.meta)
        for text, stopped in zip(group.texts, group.stopped, strict=True):
            if stopped and accept(prompt.meta, text):
                parsed = parse_completion(text)
                kept.append(ChatExample(ex.messages, parsed.reasoning, parsed.answer,
                                        {**ex.meta, "source": "rejection-sampling"}))
                break
    return kept
