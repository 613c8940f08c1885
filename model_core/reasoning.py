"""Streaming split of an R1 completion into reasoning and answer at `</think>`.

DeepSeek-R1 writes `reasoning</think>\n\nanswer`. The chat prompt of an R1 checkpoint already ends
with `<think>\n`, so the opening tag is usually missing from the output: the splitter then starts in
reasoning mode (`starts_in_reasoning=True`). Otherwise it starts in answer mode and an opening
`<think>` switches to reasoning.

Rules, chosen so that the result never depends on how the text is cut into tokens:
- The answer never holds a reasoning tag. Outside reasoning, `<think>` opens a reasoning block (again,
  after an earlier one closed: a weak model sometimes thinks twice, and a customer must never see raw
  reasoning) that runs to its `</think>` or the end; its text joins the reasoning stream. A stray
  `</think>` outside reasoning is dropped. R1's own chat template cuts an assistant turn at its last
  `</think>` when it is fed back, so an answer holding tags could never be fed back as shown; the
  price is that an answer cannot quote the tags themselves.
- Whitespace right after a tag is dropped (R1 writes `<think>\n` and `</think>\n\n`), so neither
  stream starts a block with blank lines. The implicit opening tag of `starts_in_reasoning` counts as a
  tag. Trailing whitespace before `</think>` is kept: dropping it would mean holding back arbitrary runs
  of whitespace, and callers can `rstrip()` the final reasoning.
- A redundant `<think>` at the very start of a reasoning block (the model repeating the prompt's tag)
  is dropped; once the block has text, `<think>` inside it is literal reasoning text. Text before a
  stray `</think>` stays answer (it was already shown; streaming cannot take it back).
- A text that ends with part of a tag (`</thi`) has held that part back; `flush()` releases it as
  plain text of the current stream. Only as many characters as could start a tag are ever held.
"""

from __future__ import annotations

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

_ANSWER, _REASONING = "answer", "reasoning"

__all__ = ["CLOSE_TAG", "OPEN_TAG", "ReasoningSplitter", "prompt_opens_reasoning"]


def prompt_opens_reasoning(prompt: str) -> bool:
    """True when a rendered chat prompt already opened the reasoning block (R1's `<think>\\n`)."""
    return prompt.rstrip().endswith(OPEN_TAG)


def _prefixes(tags: tuple[str, ...]) -> frozenset[str]:
    return frozenset(tag[:i] for tag in tags for i in range(1, len(tag)))


_PREFIXES = {tags: _prefixes(tags) for tags in [(OPEN_TAG, CLOSE_TAG), (CLOSE_TAG,), (CLOSE_TAG, OPEN_TAG)]}
_MAX_HOLD = len(CLOSE_TAG) - 1


class ReasoningSplitter:
    """Feed decoded text pieces; get back `("reasoning" | "answer", text)` pieces in order."""

    def __init__(self, starts_in_reasoning: bool) -> None:
        self._state = _REASONING if starts_in_reasoning else _ANSWER
        self._pending = ""  # the tail of the stream that could still become a tag
        self._skip_ws = starts_in_reasoning  # just after a (possibly implicit) tag
        self._block_started = False  # any text in the current reasoning block yet?
        self.saw_close = False  # whether a reasoning block was closed by `</think>`

    @property
    def in_reasoning(self) -> bool:
        return self._state == _REASONING

    def _tags(self) -> tuple[str, ...]:
        if self._state == _ANSWER:
            return (OPEN_TAG, CLOSE_TAG)
        # Until the block has text, a repeated opening tag is swallowed rather than shown.
        return (CLOSE_TAG,) if self._block_started else (CLOSE_TAG, OPEN_TAG)

    def _emit(self, out: list[tuple[str, str]], text: str) -> None:
        if self._skip_ws:
            text = text.lstrip()
            if not text:
                return
            self._skip_ws = False
        if not text:
            return
        kind = "reasoning" if self._state == _REASONING else "answer"
        if kind == "reasoning":
            self._block_started = True
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + text)
        else:
            out.append((kind, text))

    def _on_tag(self, tag: str) -> None:
        if tag == OPEN_TAG:
            if self._state == _ANSWER:
                self._block_started = False  # a new block (a repeated opener inside one changes nothing)
            self._state = _REASONING
        else:
            if self._state == _REASONING:
                self.saw_close = True
            self._state = _ANSWER  # closes the block, or is a stray closer (dropped)
        self._skip_ws = True

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        buf = self._pending + text
        self._pending = ""
        while buf:
            tags = self._tags()
            hit, which = -1, ""
            for tag in tags:
                i = buf.find(tag)
                if i != -1 and (hit == -1 or i < hit):
                    hit, which = i, tag
            if hit != -1:
                self._emit(out, buf[:hit])
                if which not in self._tags():
                    # Reasoning text came before this `<think>`: it is literal text, not a tag; scan on.
                    buf = buf[hit:]
                    continue
                self._on_tag(which)
                buf = buf[hit + len(which):]
                continue
            # No whole tag: hold back the longest suffix that could begin one, release the rest.
            prefixes = _PREFIXES[tags]
            held = len(buf)
            for k in range(min(len(buf), _MAX_HOLD), 0, -1):
                if buf[-k:] in prefixes:
                    held = len(buf) - k
                    break
            self._emit(out, buf[:held])
            self._pending = buf[held:]
            break
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of stream: a held partial tag was never completed, so it is ordinary text."""
        out: list[tuple[str, str]] = []
        pending, self._pending = self._pending, ""
        self._emit(out, pending)
        return out
