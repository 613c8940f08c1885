"""The streaming output stage: a hold-back buffer between the model and the person.

Text from the engine is appended per stream ("reasoning", "answer"). After a sentence ends (and at
least every `check_every` characters once the buffer is long) the checks run over a sliding window
(the tail of what was already released plus everything pending), then text is released up to a cut
that no possible match can straddle:

- sentence-bounded checks (the rule floor, pack rules and PII are matched one sentence at a time, see
  `rules.sentence_spans`) can never match across a sentence end, so every *completed* sentence has
  been fully judged and may leave at once: the customer sees the first sentence as soon as it ends,
  not 200 characters later;
- a check with a bounded `reach` (the canary's spelled-out form) holds back its reach;
- text `holdback` characters behind the newest token is always safe to release (all output rules
  are bounded, see `rules.MAX_OUTPUT_MATCH`), so a sentence that never ends still streams.

The cut is the most cautious of these; an unfinished sentence is never released. PII in pending
text is replaced by placeholders before release. When a check blocks, the stage emits `retract` for
every stream that already released text, then the pack's refusal, and stays blocked; later tokens
are kept for the record (`raw`) but never released. Unbounded checks (classifiers) may fire on text
already released: that is what `retract` is for. `finish()` flushes the buffer through the same
checks and appends the pack's disclaimer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from apps.safety.findings import Finding
from apps.safety.policy import PackPolicy
from apps.safety.rules import SENTENCE_END
from apps.safety.verdicts import ALLOW, BLOCK, DISCLAIM, REDACT, Emission, Stopwatch, Verdict

OutputCheck = Callable[[str, PackPolicy], list[Finding]]
STREAMS = ("reasoning", "answer")


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
        # Check when a sentence may have ended (a chunk with end punctuation or a newline) or, for text
        # without sentence ends, every `check_every` characters once past the hold-back.
        before = stream.pending[-len(text) - 1: -len(text)]
        ended = any(ch in ".!?\n" for ch in text) or (before != "" and before in ".!?" and text[:1].isspace())
        if not ended and len(stream.pending) < self.holdback + self.check_every:
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
        findings = self._check(window)
        blocking = [f for f in findings if f.action in (BLOCK, "escalate")]
        if blocking:
            return self._block(kind, blocking[0])
        # Redact PII that is due for release now, last match first so earlier spans stay valid. A PII
        # match is shorter than the hold-back, so one that starts before the cut is complete.
        cut = len(window) if final else max(len(context), self._safe_cut(window, len(context)))
        redactions = sorted((f for f in findings if f.action == REDACT and f.start >= len(context)),
                            key=lambda f: f.start, reverse=True)
        for finding in redactions:
            if finding.start >= cut:
                continue
            placeholder = f"<{finding.kind or 'PII'}>"
            window = window[: finding.start] + placeholder + window[finding.end:]
            cut = max(cut + len(placeholder) - (finding.end - finding.start), finding.start + len(placeholder))
        pending = window[len(context):]
        release_len = len(pending) if final else self._word_boundary(pending, cut - len(context))
        out, stream.pending = pending[:release_len], pending[release_len:]
        stream.released += out
        return [Emission(kind, out)] if out else []

    def _safe_cut(self, window: str, start: int) -> int:
        """Where released text may end: the most cautious of every check's safe point, but never
        before `holdback` characters behind the newest token (bounded rules are safe there)."""
        sentence_end = start
        for match in SENTENCE_END.finditer(window, start):
            sentence_end = match.end() + 1 if match.group() != "\n" else match.end()
        cut = sentence_end
        for _, check in self.checks:
            reach = getattr(check, "reach", None)
            if reach is not None:
                cut = min(cut, len(window) - reach)
        return max(cut, len(window) - self.holdback)

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

    def _check(self, window: str) -> list[Finding]:
        findings: list[Finding] = []
        for name, check in self.checks:
            clock = Stopwatch()
            try:
                found = check(window, self.policy)
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
