"""Chat-format training examples: render with the checkpoint's template, mask, pack.

An example is a conversation whose last turn is the assistant's: a short reasoning and the answer.
It is rendered the way the engine will see it at serving time: the prompt (every turn before the
last, with the generation prompt) through `ChatFormat`, then the completion tokenised on its own and
appended, exactly as generated tokens follow a prompt. The completion is
`<think>\\n{reasoning}\\n</think>\\n\\n{answer}` followed by the template's end-of-turn marker; R1
templates already end the prompt with `<think>\\n`, so the opening tag is then not repeated.
The loss mask is 1 exactly on the completion tokens (the assistant's), 0 on the prompt. A
decision-only example (`meta["decision_only"]`) stops its completion after the opening of the
reasoning: it teaches the first sentence the model writes and nothing after it.

`pack_sequences` concatenates encoded examples into fixed-length rows (first fit, pad to length).
Packed examples attend to earlier ones in their row (the model's forward takes no block mask); the
mask keeps their loss apart, and positions run on so RoPE stays consistent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from model_core.chat import ChatFormat
from model_core.reasoning import CLOSE_TAG, OPEN_TAG
from model_core.tokenizer import Tokenizer

_SENTINEL = "\u2063VERITY_SENTINEL\u2063"


@dataclass
class ChatExample:
    """`messages`: the conversation before the assistant's reply; `meta`: domain, kind, key..."""

    messages: list[dict[str, str]]
    reasoning: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def prompt(self) -> str:
        return next(m["content"] for m in reversed(self.messages) if m["role"] == "user")


@dataclass
class Encoded:
    ids: list[int]
    mask: list[float]  # the loss weight of each token: 0 on the prompt, 1 (or meta["loss_weight"]) on the completion

    @property
    def prompt_len(self) -> int:
        return next((i for i, w in enumerate(self.mask) if w > 0), len(self.ids))


class ChatRenderer:
    """Turns chat examples into token ids + loss mask with one checkpoint's template."""

    def __init__(self, tokenizer: Tokenizer, chat_format: ChatFormat | None = None) -> None:
        if chat_format is None:
            if not tokenizer.chat_template:
                raise ValueError("the checkpoint has no chat template; chat-format training needs one")
            chat_format = ChatFormat(tokenizer.chat_template, bos_token=tokenizer.bos_token,
                                     eos_token=tokenizer.eos_token)
        self.tokenizer = tokenizer
        self.chat = chat_format
        self.end_of_turn = self._end_of_turn()
        probe = self.chat.render([{"role": "user", "content": "x"}], add_generation_prompt=True)
        self.prompt_opens_reasoning = probe.rstrip().endswith(OPEN_TAG)

    def _end_of_turn(self) -> str:
        """What the template writes after an assistant message's content (e.g. `<|im_end|>`)."""
        text = self.chat.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": _SENTINEL}],
                                add_generation_prompt=False)
        if _SENTINEL not in text:
            raise ValueError("the chat template does not render assistant messages")
        suffix = text.split(_SENTINEL, 1)[1].rstrip("\n")
        return suffix or (self.tokenizer.eos_token or "")

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        # as the engine prompts at serving time (R1: instructions in the user turn)
        text = self.chat.render(messages, add_generation_prompt=True, instructions_in_user_turn=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def completion_text(self, reasoning: str, answer: str) -> str:
        body = f"{reasoning.strip()}\n{CLOSE_TAG}\n\n{answer.strip()}"
        return body if self.prompt_opens_reasoning else f"{OPEN_TAG}\n{body}"

    def encode(self, example: ChatExample, max_len: int | None = None) -> Encoded:
        prompt = self.prompt_ids(example.messages)
        if example.meta.get("decision_only"):
            text = example.reasoning.strip() if self.prompt_opens_reasoning else f"{OPEN_TAG}\n{example.reasoning.strip()}"
        elif example.meta.get("open_ended"):  # the reply's opening only: no end of turn after it
            text = self.completion_text(example.reasoning, example.answer)
        else:
            text = self.completion_text(example.reasoning, example.answer) + self.end_of_turn
        completion = self.tokenizer.encode(text, add_special_tokens=False)
        weight = float(example.meta.get("loss_weight", 1))
        if weight <= 0:
            raise ValueError(f"loss_weight must be positive, got {weight}")
        ids, mask = prompt + completion, [0.0] * len(prompt) + [weight] * len(completion)
        if max_len is not None and len(ids) > max_len:
            # Cut the completion's tail, never the prompt: a prompt without its question teaches nothing.
            if len(prompt) >= max_len:
                raise ValueError(f"prompt of {len(prompt)} tokens does not fit max_len={max_len}")
            ids, mask = ids[:max_len], mask[:max_len]
        return Encoded(ids, mask)


@dataclass
class PackedBatch:
    ids: torch.Tensor  # [N, L] long
    mask: torch.Tensor  # [N, L] float: the loss weight, 0 off the assistant tokens

    def __len__(self) -> int:
        return self.ids.shape[0]


def pack_sequences(encoded: Sequence[Encoded], seq_len: int, pad_id: int) -> PackedBatch:
    """First-fit packing of whole examples into rows of `seq_len` tokens (longer ones truncated)."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2, got {seq_len}")
    rows: list[tuple[list[int], list[float]]] = []
    for enc in encoded:
        ids, mask = enc.ids[:seq_len], enc.mask[:seq_len]
        for row in rows:
            if len(row[0]) + len(ids) <= seq_len:
                row[0].extend(ids)
                row[1].extend(mask)
                break
        else:
            rows.append((list(ids), list(mask)))
    out_ids = torch.full((len(rows), seq_len), pad_id, dtype=torch.long)
    out_mask = torch.zeros((len(rows), seq_len), dtype=torch.float32)
    for i, (ids, mask) in enumerate(rows):
        out_ids[i, :len(ids)] = torch.tensor(ids)
        out_mask[i, :len(mask)] = torch.tensor(mask, dtype=torch.float32)
    return PackedBatch(out_ids, out_mask)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids [B, L] and a 0/1 mask of real tokens; right padding is safe under causal
    attention (no real token ever sees a pad)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    real = torch.zeros((len(sequences), length), dtype=torch.float32)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        real[i, :len(s)] = 1.0
    return ids, real


def pad_token_id(tokenizer: Tokenizer) -> int:
    for candidate in (tokenizer.eos_token_id, tokenizer.bos_token_id, 0):
        if candidate is not None:
            return candidate
    return 0
