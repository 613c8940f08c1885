"""The streaming output stage: a hold-back buffer between the model and the person.

Text from the engine is appended per stream ("reasoning", "answer"). Whenever a word may have ended
(a chunk with whitespace) the checks run over a sliding window (the tail of what was already released
plus everything pending), then text is released up to a cut that no possible match can straddle:

- sentence-bounded checks (the rule floor, pack rules and PII are matched one sentence at a time, see
  `rules.sentence_spans`) can never match across a sentence end, so every *completed* sentence has
  been fully judged and may leave at once;
- of the *unfinished* sentence, text may leave up to the earliest position at which any
  sentence-bounded check could still match once more text arrives (`partial`: the regex rules by
  partial matching, PII by holding from the start of any word that could begin an entity until the
  sentence ends or the hold proves harmless). The customer sees the first words as they are written,
  not when the first sentence ends. A check without such a rule holds the whole unfinished sentence;
- a check with a bounded `reach` (the canary's spelled-out form) holds back its reach;
- text `holdback` characters behind the newest token is always safe to release (all output rules
  are bounded, see `rules.MAX_OUTPUT_MATCH`), so a sentence that never ends still streams.

Released text ends on whitespace, so a word is never split on screen, except with `mid_word=True`:
for a source that cannot write `partial.SOURCE_CANNOT_WRITE` (`@`; the conversation layer has the
engine mask it), the checks run on every piece and the leading letters of a word still being written
may leave at once (`partial.pii_hold`), so the first word paints with its first token. Such a stage
blocks if the character arrives anyway (fail closed). A blocking match that ends where the text ends,
inside a word, waits for the word to end: "buy" may still become "buyer" (its text stays held).

The cut is the most cautious of these; nothing a check could still match is ever released. PII in
pending text is replaced by placeholders before release (the pending part of an entity whose start
already left, too). When a check blocks, the stage emits `retract` for every stream that already
released text, then the pack's refusal, and stays blocked; later tokens are kept for the record (`raw`)
but never released. Unbounded checks (classifiers) may fire on text already released: that is what
`retract` is for. `finish()` flushes the buffer through the same checks and appends the pack's
disclaimer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from apps.safety.findings import Finding
from apps.safety.partial import SOURCE_CANNOT_WRITE, pii_hold, rules_hold
from apps.safety.policy import PackPolicy
from apps.safety.rules import SENTENCE_END
from apps.safety.verdicts import ALLOW, BLOCK, DISCLAIM, REDACT, Emission, Stopwatch, Verdict

OutputCheck = Callable[[str, PackPolicy], list[Finding]]
# (text, start of its unfinished sentence, policy, opens_sentence=...) -> earliest position to hold from.
PartialHold = Callable[..., int]
STREAMS = ("reasoning", "answer")
# The partial-release rule of each built-in sentence-bounded check, by the name the pipeline gives it.
# A check may carry its own rule as a `partial_hold` attribute (the pipeline's output PII check, which
# ignores names, does); these are the defaults by name, the most cautious (pii_hold holds possible names).
PARTIAL_HOLDS: dict[str, PartialHold] = {"rules": rules_hold, "pii": pii_hold}


@dataclass
class _Stream:
    raw: str = ""       # everything the model produced on this stream (kept for the record)
    pending: str = ""   # received, checked or not, not yet released
    released: str = ""  # what the person has been sent (after redaction)


@dataclass
class OutputStage:
    """One reply's output checks. Create through `SafetyPipeline.output_stage()`."""

    policy: PackPolicy
    checks: list[tuple[str, OutputCheck]]
    holdback: int = 200
    check_every: int = 24
    mid_word: bool = False  # only for a source that cannot write SOURCE_CANNOT_WRITE (see the docstring)
    partial_holds: dict[str, PartialHold] = field(default_factory=lambda: dict(PARTIAL_HOLDS))
    verdicts: list[Verdict] = field(default_factory=list)
    blocked: bool = False
    disclaimer: str | None = None
    finished: bool = False
    _streams: dict[str, _Stream] = field(default_factory=lambda: {k: _Stream() for k in STREAMS})
    _latency: dict[str, float] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set)
    _notes: list[str] = field(default_factory=list)  # texts of pack "disclaim" rules that fired

    # -- public API -------------------------------------------------------------------------------

    def feed(self, kind: str, text: str) -> list[Emission]:
        """Take the next piece of the `kind` stream; return what may be published now."""
        if kind not in STREAMS:
            raise ValueError(f"unknown stream kind {kind!r}; expected one of {STREAMS}")
        if self.finished:
            raise RuntimeError("feed() after finish()")
        stream = self._streams[kind]
        stream.raw += text
        if self.blocked:
            return []
        stream.pending += text
        if self.mid_word:
            if any(ch in text for ch in SOURCE_CANNOT_WRITE):
                # The engine was asked never to write this; mid-word release relied on it.
                return self._block(kind, Finding("output.unexpected_character", BLOCK))
            return self._advance(kind, final=False)
        # Check when a word may have ended (released text ends on whitespace, so nothing new could leave
        # before) or, for text without spaces, every `check_every` characters once past the hold-back.
        if not any(ch.isspace() for ch in text) and len(stream.pending) < self.holdback + self.check_every:
            return []
        return self._advance(kind, final=False)

    def finish(self) -> list[Emission]:
        """Flush held-back text through the checks; append the disclaimer if the answer stands."""
        if self.finished:
            return []
        emissions: list[Emission] = []
        for kind in STREAMS:
            if not self.blocked:
                emissions += self._advance(kind, final=True)
        self.finished = True
        for name, total in self._latency.items():
            self.verdicts.append(Verdict("output", name, ALLOW, 0.0, total, {"cumulative": True}))
        if not self.blocked:
            # Qualifying notes from fired "disclaim" rules come first, then the pack's disclaimer.
            self.disclaimer = "\n\n".join([*self._notes, self.policy.disclaimer])
            self.verdicts.append(Verdict("output", "disclaimer", DISCLAIM, 1.0, 0.0))
            emissions.append(Emission("answer", "\n\n" + self.disclaimer))
        return emissions

    @property
    def answer_text(self) -> str:
        """Everything released on the answer stream (the refusal, if blocked), without disclaimer."""
        return self._streams["answer"].released

    @property
    def reasoning_text(self) -> str:
        return self._streams["reasoning"].released

    def raw(self, kind: str) -> str:
        """What the model produced on `kind`, unfiltered: for the encrypted record, never the screen."""
        return self._streams[kind].raw

    # -- internals --------------------------------------------------------------------------------

    def _advance(self, kind: str, *, final: bool) -> list[Emission]:
        stream = self._streams[kind]
        context = stream.released[-self.holdback:]
        window = context + stream.pending
        cut = len(window)
        if not final:
            opens_sentence = len(stream.released) <= self.holdback
            cut = max(len(context), self._safe_cut(window, len(context), opens_sentence))
            if self._releasable(stream.pending, cut - len(context)) == 0:
                # Nothing could leave yet (a number, a name or a claim still being written): the checks
                # can wait until something could, or for finish(); they see all of this text then.
                return []
        # Sentences that ended inside the released text were judged whole before they left: the
        # sentence-bounded checks start at the sentence the pending text belongs to.
        judged = max((m.end() for m in SENTENCE_END.finditer(window, 0, len(context))), default=0)
        findings = self._check(window, judged)
        blocking = [f for f in findings if f.action in (BLOCK, "escalate")
                    and (final or not self._may_grow(window, f))]
        if blocking:
            return self._block(kind, blocking[0])
        # Redact PII that is due for release now, last match first so earlier spans stay valid. Nothing
        # is released that a PII check could still extend (`partial.pii_hold`), so a match that starts
        # before the cut is complete. An entity whose start already left (a possible name's first word
        # judged harmless, then the next one judged with its sentence) has its pending part replaced.
        redactions = sorted((f for f in findings if f.action == REDACT and f.end > len(context)),
                            key=lambda f: f.start, reverse=True)
        for finding in redactions:
            start = max(finding.start, len(context))
            if start >= cut:
                continue
            placeholder = f"<{finding.kind or 'PII'}>"
            window = window[:start] + placeholder + window[finding.end:]
            cut = max(cut + len(placeholder) - (finding.end - start), start + len(placeholder))
        pending = window[len(context):]
        release_len = len(pending) if final else self._releasable(pending, cut - len(context))
        out, stream.pending = pending[:release_len], pending[release_len:]
        stream.released += out
        return [Emission(kind, out)] if out else []

    def _safe_cut(self, window: str, start: int, opens_sentence: bool = True) -> int:
        """Where released text may end: the most cautious of every check's safe point, but never
        before `holdback` characters behind the newest token (bounded rules are safe there).

        `opens_sentence`: whether `window[0]` begins a sentence (the stream's start is in the window)."""
        sentence_end, unfinished = start, 0
        for match in SENTENCE_END.finditer(window):
            unfinished = match.end()
            if match.end() > start:
                sentence_end = match.end() + 1 if match.group() != "\n" else match.end()
        sentence_end = min(sentence_end, len(window))
        cut = len(window)
        for name, check in self.checks:
            reach = getattr(check, "reach", None)
            hold = self._hold(name, check)
            if reach is not None:
                cut = min(cut, len(window) - reach)
            elif hold is None:
                cut = min(cut, sentence_end)  # sentence-bounded, no partial rule: whole sentences only
            else:
                try:
                    held = hold(window, unfinished, self.policy, opens_sentence=opens_sentence or unfinished > 0,
                                mid_word=self.mid_word)
                except Exception:  # noqa: BLE001 - fail closed: the whole unfinished sentence waits
                    held = sentence_end
                cut = min(cut, max(sentence_end, held))
        return max(cut, len(window) - self.holdback)

    def _hold(self, name: str, check: OutputCheck) -> PartialHold | None:
        """The partial-release rule of a check: its own `partial_hold`, else the default for its name."""
        return getattr(check, "partial_hold", None) or self.partial_holds.get(name)

    def _releasable(self, pending: str, limit: int) -> int:
        """How much of `pending` may leave now, given the checks' cut `limit`."""
        if self.mid_word:
            return max(limit, 0)
        return self._word_boundary(pending, limit)

    @staticmethod
    def _may_grow(window: str, finding: Finding) -> bool:
        """A match ending where the text ends, inside a word, may be a prefix of a longer word."""
        end = finding.end
        return end is not None and end >= len(window) > 0 and window[-1].isalnum()

    @staticmethod
    def _word_boundary(pending: str, limit: int) -> int:
        """Release up to `limit` chars, ending at whitespace so a word is never split on screen."""
        if limit <= 0:
            return 0
        space = max(pending.rfind(" ", 0, limit), pending.rfind("\n", 0, limit))
        if space >= 0:
            return space + 1
        # No break in sight (a URL, or a language written without spaces): do not stall forever.
        return limit if limit >= 32 else 0

    def _check(self, window: str, judged: int = 0) -> list[Finding]:
        """Run every check over `window`; the sentence-bounded ones (those with a partial-release rule)
        over `window[judged:]` only, `judged` being a sentence start. Spans index into `window`."""
        findings: list[Finding] = []
        for name, check in self.checks:
            clock = Stopwatch()
            offset = judged if self._hold(name, check) is not None else 0
            try:
                found = check(window[offset:], self.policy)
                if offset:
                    found = [replace(f, start=f.start + offset, end=f.end + offset) for f in found]
            except Exception as exc:  # noqa: BLE001 - fail closed
                self._latency[name] = self._latency.get(name, 0.0) + clock.ms()
                self.verdicts.append(Verdict("output", f"{name}.error", BLOCK, 1.0, clock.ms(),
                                             {"error": type(exc).__name__}))
                return [Finding(f"{name}.error", BLOCK)]
            self._latency[name] = self._latency.get(name, 0.0) + clock.ms()
            for finding in found:
                # One verdict per rule per reply, not one per token.
                if finding.action != REDACT and (finding.rule, finding.action) not in self._seen:
                    self._seen.add((finding.rule, finding.action))
                    if finding.action == DISCLAIM and finding.message and finding.message not in self._notes:
                        self._notes.append(finding.message)
                    self.verdicts.append(Verdict("output", finding.rule, finding.action, finding.score, clock.ms()))
                elif finding.action == REDACT:
                    self.verdicts.append(Verdict("output", finding.rule, REDACT, finding.score, clock.ms(),
                                                 {"entity": finding.kind}))
            findings += found
        return findings

    def _block(self, kind: str, finding: Finding) -> list[Emission]:
        self.blocked = True
        emissions = [Emission("retract", "", target=k) for k in STREAMS if self._streams[k].released]
        for k in STREAMS:
            self._streams[k].pending = ""
            self._streams[k].released = ""
        self.verdicts.append(Verdict("output", "retract", "retract", 1.0, 0.0, {"stream": kind,
                                                                              "rule": finding.rule}))
        refusal = finding.message or self.policy.refusal
        self._streams["answer"].released = refusal
        emissions.append(Emission("answer", refusal))
        return emissions
