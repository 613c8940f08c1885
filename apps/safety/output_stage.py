"""The streaming output stage: a hold-back buffer between the model and the person.

Text from the engine is appended per stream ("reasoning", "answer"). After every `feed` the checks run
over a sliding window (the tail of what was already released plus everything pending); only text that
is at least `holdback` characters behind the newest token is released, so any match no longer than
the hold-back (all output rules are bounded, see `rules.MAX_OUTPUT_MATCH`) is caught before a single
character of it leaves. PII in pending text is replaced by placeholders before release.

When a check blocks, the stage emits `retract` for every stream that already released text, then the
pack's refusal, and stays blocked; later tokens are kept for the record (`raw`) but never released.
Unbounded checks (classifiers) may fire on text already released: that is what `retract` is for.
`finish()` flushes the buffer through the same checks and appends the pack's disclaimer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from apps.safety.findings import Finding
from apps.safety.policy import PackPolicy
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
        # Nothing can be released until the pending text outgrows the hold-back, so checking earlier
        # would only repeat work; checking every `check_every` characters keeps per-token cost low.
        if len(stream.pending) < self.holdback + self.check_every:
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
        cut = len(window) if final else max(len(context), len(window) - self.holdback)
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
