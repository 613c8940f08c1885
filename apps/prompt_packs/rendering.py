"""Render a pack and a conversation into chat messages under a token budget.

`prompt_build` assembles, through langchain-core prompt templates and messages:

    [system: pack instructions + risk controls (+ running summary)]   <- never dropped
    [older turns ..., dropped oldest-first when over budget]
    [user: the newest user text]                                      <- never dropped

and returns plain `{"role", "content"}` dicts for `Engine.render_chat`. Rules it keeps:
- earlier reasoning is never fed back: `<think>...</think>` is stripped from assistant history
  (DeepSeek-R1 model card: reasoning in the history degrades answers and wastes the window);
- for R1 checkpoints there is no system message: the instructions open the first user message of the
  window (R1 card: "all instructions should be contained within the user prompt"); keeping them at the
  front rather than next to the newest question keeps the prefix stable for the engine's prefix cache;
- a whole turn (a user message and the replies after it) is dropped at once, so the window never
  starts with a reply to a question it no longer shows;
- when turns were dropped and a running summary is given, it goes right after the instructions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate

from apps.core.errors import ApplicationError, ErrorCode

_THINK_BLOCK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)
_ROLE_OF = {"system": "system", "human": "user", "ai": "assistant"}

_INSTRUCTIONS = PromptTemplate.from_template(
    "{instructions}\n\nRisk controls (these always apply):\n{controls}"
)
_SUMMARY = PromptTemplate.from_template(
    "Summary of the earlier part of this conversation (older turns were removed to fit the context):\n{summary}"
)
# R1: the instructions travel inside the first user message, clearly separated from what the user wrote.
_R1_USER = PromptTemplate.from_template("{preamble}\n\n---\n\n{text}")
_CHAT = ChatPromptTemplate.from_messages(
    [
        ("system", "{preamble}"),
        MessagesPlaceholder("history"),
        ("human", "{user_text}"),
    ]
)
_CHAT_R1 = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{user_text}")])


class RenderablePack(Protocol):
    """What rendering needs of a pack: a `PackVersion`, saved or not, fits."""

    @property
    def instructions(self) -> str: ...

    @property
    def risk_controls(self) -> list[str]: ...


@dataclass(frozen=True)
class PromptBuild:
    """The rendered prompt; `trimmed` is True when older turns were dropped (the page shows it)."""

    messages: list[dict[str, str]]
    trimmed: bool
    dropped_turns: int = 0
    tokens: int = 0
    summary_used: bool = False


def reasoning_strip(text: str) -> str:
    """Remove R1 reasoning from a reply: `<think>` blocks, an unclosed one, or text before a lone `</think>`."""
    if "</think>" in text and "<think>" not in text.split("</think>", 1)[0]:
        # R1 often omits the opening tag (the chat template adds it), leaving "reasoning</think>answer".
        text = text.split("</think>", 1)[1]
    return _THINK_BLOCK.sub("", text).strip()


def pack_preamble(pack: RenderablePack) -> str:
    """The pack's instructions with its risk-control prompts: the part of every prompt never dropped."""
    controls = "\n".join(f"- {control}" for control in pack.risk_controls)
    return _INSTRUCTIONS.format(instructions=pack.instructions, controls=controls)


def prompt_build(
    *,
    pack: RenderablePack,
    history: Sequence[dict[str, Any]],
    user_text: str,
    is_r1: bool,
    count_tokens: Callable[[list[dict[str, str]]], int],
    budget: int,
    summary: str | None = None,
    covered: int = 0,
) -> PromptBuild:
    """Render `history` + `user_text` for `pack` within `budget` tokens as measured by `count_tokens`.

    With a `summary`, the first `covered` turns (those it already summarises) are never rendered again.
    Raises `ApplicationError(CONTEXT_LENGTH_EXCEEDED)` when the instructions and the newest message
    alone do not fit.
    """
    if budget <= 0:
        raise ValueError(f"budget must be a positive number of tokens, got {budget}")
    turns = _turns(history)
    preamble = pack_preamble(pack)
    summary = (summary or "").strip() or None
    start = min(max(covered, 0), len(turns)) if summary else 0

    def attempt(dropped: int, with_summary: bool) -> tuple[list[dict[str, str]], int]:
        kept = [message for turn in turns[dropped:] for message in turn]
        text = preamble
        if with_summary and dropped and summary:
            text = f"{preamble}\n\n{_SUMMARY.format(summary=summary)}"
        messages = _render(text, kept, user_text, is_r1)
        return messages, count_tokens(messages)

    messages, tokens = attempt(start, True)
    if tokens <= budget:
        if start:
            return PromptBuild(messages, True, start, tokens, summary_used=True)
        return PromptBuild(messages=messages, trimmed=False, tokens=tokens)

    # Fewer turns never means more tokens, so the smallest number of turns to drop is a binary search:
    # a handful of count_tokens calls instead of one per turn on a long conversation.
    low, high = start + 1, len(turns)
    best: tuple[int, list[dict[str, str]], int] | None = None
    while low <= high:
        middle = (low + high) // 2
        candidate, count = attempt(middle, True)
        if count <= budget:
            best, high = (middle, candidate, count), middle - 1
        else:
            low = middle + 1
    if best is not None:
        dropped, messages, tokens = best
        return PromptBuild(messages, True, dropped, tokens, summary_used=summary is not None)

    # Even the bare minimum with the summary is too long: the summary is the last thing to give up.
    messages, tokens = attempt(len(turns), False)
    if tokens <= budget:
        return PromptBuild(messages, True, len(turns), tokens, summary_used=False)
    raise ApplicationError(
        ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        f"The message and the assistant's instructions need {tokens} tokens, more than the {budget} "
        "this model allows for a prompt. Please send a shorter message.",
        field="text",
        data={"prompt_tokens": tokens, "budget": budget},
    )


def _turns(history: Sequence[dict[str, Any]]) -> list[list[BaseMessage]]:
    """Group history into turns, each starting at a user message; reasoning stripped from replies."""
    turns: list[list[BaseMessage]] = []
    for index, item in enumerate(history):
        role, content = item.get("role"), item.get("content")
        if not isinstance(content, str):
            raise ValueError(f"history[{index}].content must be a string")
        if role == "user":
            turns.append([HumanMessage(content=content)])
        elif role == "assistant":
            # Only the answer is history; a separate "reasoning" field is ignored on purpose.
            message = AIMessage(content=reasoning_strip(content))
            if turns:
                turns[-1].append(message)
            else:
                turns.append([message])
        else:
            raise ValueError(f"history[{index}].role must be 'user' or 'assistant', got {role!r}")
    return turns


def _render(preamble: str, kept: list[BaseMessage], user_text: str, is_r1: bool) -> list[dict[str, str]]:
    if not is_r1:
        return _as_dicts(_CHAT.format_messages(preamble=preamble, history=kept, user_text=user_text))
    if not kept:
        return _as_dicts(
            _CHAT_R1.format_messages(history=[], user_text=_R1_USER.format(preamble=preamble, text=user_text))
        )
    first = kept[0]
    if isinstance(first, HumanMessage):
        opened = [HumanMessage(content=_R1_USER.format(preamble=preamble, text=first.content)), *kept[1:]]
    else:
        # The window opens with a reply (e.g. a greeting): the instructions get a user message of their own.
        opened = [HumanMessage(content=preamble), *kept]
    return _as_dicts(_CHAT_R1.format_messages(history=opened, user_text=user_text))


def _as_dicts(messages: list[BaseMessage]) -> list[dict[str, str]]:
    out = []
    for message in messages:
        if isinstance(message, SystemMessage | HumanMessage | AIMessage):
            out.append({"role": _ROLE_OF[message.type], "content": str(message.content)})
        else:  # pragma: no cover - the templates above only produce these three
            raise TypeError(f"unexpected message type {type(message).__name__}")
    return out
