"""Conversation memory: the prompt of each turn under the token budget, with a model-written summary.

`conversation_window` is called by the worker for every reply. It renders the pinned pack and the
history through `apps.prompt_packs.rendering.prompt_build` (instructions, risk controls and the newest
user turn are never dropped; earlier reasoning is never fed back) and keeps a running summary of the
turns that left the window:

- The window is first measured with a reserve for the summary (`budget - reserve`, no summary): the
  number of oldest turns that do not fit is where the summary must reach.
- When that passes what the summary covers (`conversation.summary_upto`), the window moves: the summary
  is folded forward by one short, greedy model call, and not just to the first turn that fits. The fold
  goes on until the kept turns take at most `VERITY_SUMMARY_FOLD_TO` (default 0.6) of the room above the
  instructions and the newest message, so the next few turns fit without another model call. Without
  that headroom, a full conversation would pay a summary call before every reply. The summary is stored
  with `summary_upto` (= `window_start`, where the rendered turns begin) and `summary_regenerations`
  counts the calls. A window that did not move costs no model call.
- The final prompt is rendered with the summary under the full budget (the summary fits the reserve),
  never repeating a turn the summary already covers.

The budget is the checkpoint's context length minus the reply's max new tokens, optionally capped by
`settings.VERITY_CONTEXT_BUDGET` (operators of a small-window deployment; tests use it to reach the
limit in a few short turns). `VERITY_SUMMARY_MAX_TOKENS` bounds the summary (default 96).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import F

from apps.conversations.models import Conversation
from apps.core.errors import ApplicationError, ErrorCode
from apps.inference import services as inference
from apps.prompt_packs.rendering import PromptBuild, prompt_build, reasoning_strip

logger = logging.getLogger(__name__)

# Tokens the summary's heading and chat-template framing add on top of the summary text itself.
SUMMARY_OVERHEAD_TOKENS = 48
_CLIP_CHARS = 600  # one message's share of the text the summariser reads


@dataclass(frozen=True)
class ContextWindow:
    """The prompt for one reply and the gauge the page shows."""

    build: PromptBuild
    budget: int
    window_start: int
    summary_regenerated: bool

    @property
    def gauge(self) -> dict[str, Any]:
        ratio = round(self.build.tokens / self.budget, 4) if self.budget else 0.0
        return {"tokens": self.build.tokens, "budget": self.budget, "ratio": ratio}

    def trimmed_event(self) -> dict[str, Any]:
        return {"dropped_turns": self.build.dropped_turns, "tokens": self.build.tokens, "budget": self.budget,
                "summary_used": self.build.summary_used, "window_start": self.window_start,
                "summary_regenerated": self.summary_regenerated}


def summary_max_tokens() -> int:
    return int(getattr(settings, "VERITY_SUMMARY_MAX_TOKENS", 96) or 96)


def summary_fold_to() -> float:
    """The share of the window's room the kept turns may use right after a fold (0 < x <= 1)."""
    value = float(getattr(settings, "VERITY_SUMMARY_FOLD_TO", 0.6) or 0.6)
    return min(max(value, 0.05), 1.0)


def prompt_budget(*, profile: str, max_tokens: int) -> int:
    """Tokens a prompt may use: the context minus the reply's room, capped by VERITY_CONTEXT_BUDGET."""
    budget = inference.context_length(profile=profile) - max_tokens
    cap = getattr(settings, "VERITY_CONTEXT_BUDGET", None)
    if cap:
        budget = min(budget, int(cap))
    if budget <= 0:
        raise ApplicationError(ErrorCode.CONTEXT_LENGTH_EXCEEDED,
                               f"max_tokens={max_tokens} leaves no room for a prompt in this model's context.")
    return budget


def history_turns(history: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """Group messages into turns as prompt_build does: a turn starts at a user message."""
    turns: list[list[dict[str, str]]] = []
    for message in history:
        if message["role"] == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def conversation_window(*, conversation: Conversation, history: list[dict[str, str]], user_text: str,
                        profile: str, max_tokens: int) -> ContextWindow:
    """The prompt for the next reply of `conversation`; folds turns into the summary when the window moved."""
    pack = conversation.pack_version
    is_r1 = inference.engine_is_r1(profile=profile)

    def count(messages: list[dict[str, str]]) -> int:
        return inference.chat_token_count(messages, profile=profile)

    def build(budget: int, summary: str | None = None, covered: int = 0,
              turns: list[dict[str, str]] | None = None) -> PromptBuild:
        return prompt_build(pack=pack, history=history if turns is None else turns, user_text=user_text,
                            is_r1=is_r1, count_tokens=count, budget=budget, summary=summary, covered=covered)

    budget = prompt_budget(profile=profile, max_tokens=max_tokens)
    room = budget - summary_max_tokens() - SUMMARY_OVERHEAD_TOKENS
    needed, regenerated = 0, False
    try:
        needed = build(room).dropped_turns if room > 0 else 0
    except ApplicationError:
        needed = 0  # even an empty window needs the reserve: the summary gives way (below)
    if needed > conversation.summary_upto:
        target = needed
        try:  # fold further, to leave headroom for the next turns (at least to `needed`)
            floor = build(room, turns=[]).tokens  # the instructions and the newest message alone
            target = max(needed, build(floor + int((room - floor) * summary_fold_to())).dropped_turns)
        except ApplicationError:
            pass
        turns = history_turns(history)
        folded = [m for turn in turns[conversation.summary_upto:target] for m in turn]
        summary = summary_fold(previous=conversation.summary, messages=folded, profile=profile)
        # Counted in the database (F) so two workers on one conversation cannot lose a regeneration.
        Conversation.objects.filter(pk=conversation.pk).update(
            summary=summary, summary_upto=target,
            summary_regenerations=F("summary_regenerations") + 1)
        conversation.refresh_from_db(fields=["summary", "summary_upto", "summary_regenerations"])
        regenerated = True
    window_start = max(needed, conversation.summary_upto) if conversation.summary else needed
    final = build(budget, conversation.summary or None, covered=conversation.summary_upto)
    Conversation.objects.filter(pk=conversation.pk).update(context_tokens=final.tokens, context_budget=budget)
    conversation.context_tokens, conversation.context_budget = final.tokens, budget
    return ContextWindow(build=final, budget=budget, window_start=window_start, summary_regenerated=regenerated)


def _transcript(messages: list[dict[str, str]]) -> str:
    lines = []
    for message in messages:
        speaker = "Customer" if message["role"] == "user" else "Assistant"
        text = " ".join(reasoning_strip(message["content"]).split())
        lines.append(f"{speaker}: {text[:_CLIP_CHARS]}")
    return "\n".join(lines)


def _summary_prompt(previous: str, transcript: str, words: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": (
        "You keep a running summary of a customer conversation so that the assistant remembers it.\n\n"
        f"Summary so far:\n{previous.strip() or '(none yet)'}\n\n"
        f"Conversation to add:\n{transcript}\n\n"
        f"Write the updated summary in at most {words} words. Keep the facts the customer gave about "
        "themselves (names, numbers, situation), what they asked and what they were told. Summary only.")}]


def summary_fold(*, previous: str, messages: list[dict[str, str]], profile: str) -> str:
    """Fold `messages` into `previous` with one short greedy model call; never longer than the reserve."""
    limit = summary_max_tokens()
    transcript = _transcript(messages)
    room = inference.context_length(profile=profile) - limit
    prompt = _summary_prompt(previous, transcript, words=max(10, limit * 2 // 3))
    # A long first fold may not fit the model: keep the newest part of the transcript.
    while inference.chat_token_count(prompt, profile=profile) > room and len(transcript) > 200:
        transcript = transcript[len(transcript) // 2:]
        prompt = _summary_prompt(previous, transcript, words=max(10, limit * 2 // 3))
    answer, reasoning = [], []
    for chunk in inference.generation_stream(messages=prompt, sampling={"greedy": True}, max_tokens=limit,
                                             profile=profile):
        if chunk.kind == "answer":
            answer.append(chunk.text)
        elif chunk.kind == "reasoning":
            reasoning.append(chunk.text)
    text = " ".join("".join(answer).split()) or " ".join("".join(reasoning).split())
    if not text:
        # The model said nothing: keep the old summary and the customer's own words rather than lose them.
        logger.warning("summary model call returned no text; falling back to an extract")
        text = " ".join(f"{previous} {_transcript([m for m in messages if m['role'] == 'user'])}".split())
    return _clip_tokens(text, limit, profile)


def _clip_tokens(text: str, limit: int, profile: str) -> str:
    # Measured as a chat message minus the template's own tokens (the engine's seam for counting).
    def tokens(value: str) -> int:
        return inference.chat_token_count([{"role": "user", "content": value}], profile=profile)

    overhead = tokens("")
    while text and tokens(text) - overhead > limit:
        text = text[: int(len(text) * 0.85)].rstrip()
    return text
