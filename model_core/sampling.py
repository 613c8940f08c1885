"""Sampling: validated parameters, composable logits processors, a seeded sampler, stop strings.

A logits processor is a plain function `(generated_ids, logits) -> logits` (the habit of mlx-lm's
`sample_utils.py`): penalties, temperature, top-k, top-p and min-p are each one processor, and the
structured-output constraints of the R1 engine plug in as further processors that mask logits.
`logits` is `(vocab,)` for one sequence or `(batch, vocab)` for several; `generated_ids` is then a
sequence of ids or one sequence per row.

Order (the one transformers' `generate` uses): extra processors (constraints) first, then repetition /
presence / frequency penalties, temperature, top-k, top-p, min-p. Penalties count the ids passed in,
which the engine makes the completion's own tokens (OpenAI semantics for presence and frequency).

`StopMatcher` holds back text that might be the start of a stop string, so a stop string split over
several tokens is never shown to a user, and everything before it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "LogitsProcessor",
    "Sampler",
    "SamplingParams",
    "StopMatcher",
    "ban_processor",
    "build_processors",
    "min_p_processor",
    "penalty_processor",
    "sample_rows",
    "temperature_processor",
    "top_k_processor",
    "top_p_processor",
]

TokenIds = Sequence[int] | torch.Tensor
LogitsProcessor = Callable[[Any, torch.Tensor], torch.Tensor]

_RESPONSE_FORMAT_TYPES = frozenset({"text", "json_object", "json_schema", "choice", "regex"})


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class SamplingParams:
    """How to pick each next token; every field is checked on construction (ValueError names it)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    greedy: bool = False
    response_format: dict | None = None
    # Characters the output must never contain: every token whose text holds one is masked. ASCII only
    # (an ASCII byte never occurs inside another character's UTF-8 encoding, so the mask is exact).
    banned_chars: str = ""

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)!r}")

        need(_is_int(self.max_tokens) and self.max_tokens >= 1, "max_tokens", "an integer >= 1")
        # `not (x >= 0)` style checks also reject NaN, which compares false with everything.
        need(_is_number(self.temperature) and self.temperature >= 0 and math.isfinite(self.temperature),
             "temperature", ">= 0")
        need(_is_number(self.top_p) and 0 < self.top_p <= 1, "top_p", "in (0, 1]")
        need(_is_int(self.top_k) and self.top_k >= 0, "top_k", "an integer >= 0 (0 disables it)")
        need(_is_number(self.min_p) and 0 <= self.min_p <= 1, "min_p", "in [0, 1]")
        need(_is_number(self.repetition_penalty) and self.repetition_penalty > 0 and
             math.isfinite(self.repetition_penalty), "repetition_penalty", "> 0 (1 disables it)")
        need(_is_number(self.presence_penalty) and -2 <= self.presence_penalty <= 2,
             "presence_penalty", "in [-2, 2]")
        need(_is_number(self.frequency_penalty) and -2 <= self.frequency_penalty <= 2,
             "frequency_penalty", "in [-2, 2]")
        need(self.seed is None or _is_int(self.seed), "seed", "an integer or None")
        need(isinstance(self.greedy, bool), "greedy", "true or false")
        if isinstance(self.stop, str):  # OpenAI accepts a single string as well as a list
            self.stop = [self.stop]
        need(isinstance(self.stop, list | tuple) and all(isinstance(s, str) and s for s in self.stop),
             "stop", "a list of non-empty strings")
        self.stop = list(self.stop)
        need(isinstance(self.stop_token_ids, list | tuple)
             and all(_is_int(t) and t >= 0 for t in self.stop_token_ids),
             "stop_token_ids", "a list of token ids (integers >= 0)")
        self.stop_token_ids = list(self.stop_token_ids)
        need(isinstance(self.banned_chars, str) and self.banned_chars.isascii(), "banned_chars",
             "a string of ASCII characters")
        rf = self.response_format
        need(rf is None or (isinstance(rf, dict) and rf.get("type") in _RESPONSE_FORMAT_TYPES),
             "response_format", f"None or a dict whose 'type' is one of {sorted(_RESPONSE_FORMAT_TYPES)}")
        if self.temperature == 0:
            # Temperature 0 is the conventional spelling of greedy decoding (OpenAI, vLLM).
            self.greedy = True

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0


# --------------------------------------------------------------------------- processors


def _rows(generated_ids: Any, batch: int) -> list[Any]:
    """One id sequence per logits row; a single sequence is accepted for 1-D logits."""
    if batch == 0:
        return [generated_ids]
    if isinstance(generated_ids, torch.Tensor) and generated_ids.dim() == 2:
        return list(generated_ids)
    assert len(generated_ids) == batch, "one generated-id sequence per logits row"
    return list(generated_ids)


def _counts(ids: Any, vocab: int, device: torch.device) -> torch.Tensor:
    ids_t = ids if isinstance(ids, torch.Tensor) else torch.as_tensor(list(ids), dtype=torch.long)
    ids_t = ids_t.to(device=device, dtype=torch.long).flatten()
    ids_t = ids_t[(ids_t >= 0) & (ids_t < vocab)]  # padding or out-of-vocab ids count for nothing
    return torch.bincount(ids_t, minlength=vocab)[:vocab]


def penalty_processor(repetition: float = 1.0, presence: float = 0.0, frequency: float = 0.0) -> LogitsProcessor:
    """Repetition (CTRL / transformers: divide positive, multiply negative logits), presence (flat) and
    frequency (per occurrence) penalties over the ids seen so far; counts are computed once for all three."""

    def apply(generated_ids: Any, logits: torch.Tensor) -> torch.Tensor:
        batch = logits.shape[0] if logits.dim() == 2 else 0
        rows = _rows(generated_ids, batch)
        out = logits.clone()
        views = [out] if batch == 0 else list(out)
        for row, ids in zip(views, rows, strict=True):
            if len(ids) == 0:
                continue
            counts = _counts(ids, row.shape[-1], row.device)
            seen = counts > 0
            if repetition != 1.0:
                penalised = torch.where(row > 0, row / repetition, row * repetition)
                row.copy_(torch.where(seen, penalised, row))
            if frequency != 0.0:
                row.sub_(counts.to(row.dtype) * frequency)
            if presence != 0.0:
                row.sub_(seen.to(row.dtype) * presence)
        return out

    return apply


def temperature_processor(temperature: float) -> LogitsProcessor:
    def apply(generated_ids: Any, logits: torch.Tensor) -> torch.Tensor:
        return logits / temperature

    return apply


def top_k_processor(k: int) -> LogitsProcessor:
    """Keep the k highest logits; ties with the k-th value are all kept (transformers' rule), so the
    result never depends on how topk orders equal values."""

    def apply(generated_ids: Any, logits: torch.Tensor) -> torch.Tensor:
        if k >= logits.shape[-1]:
            return logits
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        return logits.masked_fill(logits < kth, -math.inf)

    return apply


def top_p_processor(p: float) -> LogitsProcessor:
    """Nucleus: keep the smallest set of most likely tokens whose probability mass reaches p (ties with
    the last kept logit are kept too, as for top-k).

    A full sort of a 150k vocabulary costs more than a small model's decode step on CPU, so the
    nucleus is searched among the top 64 tokens first and the window grows 8x only while the mass
    there falls short of p: exact, and usually one small topk."""

    def apply(generated_ids: Any, logits: torch.Tensor) -> torch.Tensor:
        vocab = logits.shape[-1]
        lse = torch.logsumexp(logits.float(), dim=-1, keepdim=True)
        k = min(vocab, 64)
        while True:
            values, _ = torch.topk(logits, k, dim=-1)  # sorted, largest first
            probs = torch.exp(values.float() - lse)
            keep = torch.cumsum(probs, dim=-1) - probs < p  # mass of strictly more likely tokens
            if k == vocab or bool((~keep).any(dim=-1).all()):
                break  # every row's nucleus ends inside the window
            k = min(vocab, k * 8)
        n_keep = keep.sum(dim=-1, keepdim=True).clamp(min=1)  # the top token always survives
        cutoff = values.gather(-1, n_keep - 1)
        return logits.masked_fill(logits < cutoff, -math.inf)

    return apply


def min_p_processor(min_p: float) -> LogitsProcessor:
    """Keep tokens whose probability is at least min_p times the top token's: in logit space,
    logit >= max_logit + log(min_p), which needs no softmax."""
    threshold = math.log(min_p)

    def apply(generated_ids: Any, logits: torch.Tensor) -> torch.Tensor:
        top = logits.max(dim=-1, keepdim=True).values
        return logits.masked_fill(logits < top + threshold, -math.inf)

    return apply


def ban_processor(token_ids: torch.Tensor) -> LogitsProcessor:
    """Masks `token_ids` (a 1-D index tensor) out of every row: they can never be picked."""

    def apply(generated_ids: Any, logits: torch.Tensor) -> torch.Tensor:
        return logits.index_fill(-1, token_ids.to(logits.device), -math.inf)

    return apply


def build_processors(params: SamplingParams) -> list[LogitsProcessor]:
    """The processors `params` asks for, in application order; neutral settings add nothing.
    For greedy decoding only the penalties matter: the warpers never change the arg-max."""
    procs: list[LogitsProcessor] = []
    if (params.repetition_penalty != 1.0 or params.presence_penalty != 0.0
            or params.frequency_penalty != 0.0):
        procs.append(penalty_processor(params.repetition_penalty, params.presence_penalty,
                                       params.frequency_penalty))
    if params.is_greedy:
        return procs
    if params.temperature != 1.0:
        procs.append(temperature_processor(params.temperature))
    if params.top_k > 0:
        procs.append(top_k_processor(params.top_k))
    if params.top_p < 1.0:
        procs.append(top_p_processor(params.top_p))
    if params.min_p > 0.0:
        procs.append(min_p_processor(params.min_p))
    return procs


# --------------------------------------------------------------------------- sampler


class Sampler:
    """Picks tokens for one request. Owns a torch.Generator seeded from `params.seed` (or from the OS
    when None), so the same seed gives the same tokens whatever else uses the global RNG."""

    def __init__(self, params: SamplingParams, processors: Sequence[LogitsProcessor] = ()) -> None:
        self.params = params
        # Extra processors (constraints) run first so that the warpers renormalise over allowed tokens.
        self.processors: list[LogitsProcessor] = [*processors, *build_processors(params)]
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        # A generator lives on one device; one per device keeps CPU and CUDA logits both seedable.
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            if self.params.seed is None:
                gen.seed()
            else:
                gen.manual_seed(self.params.seed & 0xFFFF_FFFF_FFFF_FFFF)
            self._generators[device] = gen
        return gen

    def process(self, logits: torch.Tensor, generated_ids: Any) -> torch.Tensor:
        """Apply every processor; returns float32 logits (low-precision softmax loses the tail)."""
        out = logits.float()
        for proc in self.processors:
            out = proc(generated_ids, out)
        return out

    def _choose(self, processed: torch.Tensor) -> torch.Tensor:
        if self.params.is_greedy:
            return processed.argmax(dim=-1)
        # Inverse-CDF draw: one uniform number per row against the cumulative unnormalised weights.
        # Exact, reproducible through the generator, and three cheap passes over the vocabulary
        # (torch's exponential_ and multinomial cost several times more on CPU).
        weights = torch.exp(processed - processed.max(dim=-1, keepdim=True).values)
        cdf = torch.cumsum(weights, dim=-1)
        u = torch.rand(cdf.shape[:-1] + (1,), generator=self._generator(cdf.device), device=cdf.device,
                       dtype=cdf.dtype) * cdf[..., -1:]
        # right=True skips zero-weight (masked) tokens, whose cdf equals their predecessor's.
        picked = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[-1] - 1)
        return picked.squeeze(-1)

    def sample(self, logits: torch.Tensor, generated_ids: TokenIds) -> int:
        """Next token id for one sequence: `logits` is `(vocab,)` (a leading batch dim of 1 is accepted)."""
        if logits.dim() == 2 and logits.shape[0] == 1:
            logits = logits[0]
        if logits.dim() != 1:
            raise ValueError(f"Sampler.sample expects logits of shape (vocab,), got {tuple(logits.shape)}")
        processed = self.process(logits, generated_ids)
        token = int(self._choose(processed).item())
        if processed[token] == -math.inf:
            raise RuntimeError("no token is allowed: every logit was masked by the processors")
        return token

    def sample_batch(self, logits: torch.Tensor, generated_ids: Sequence[TokenIds]) -> list[int]:
        """Next token for each row of `(batch, vocab)` logits under these same parameters (n > 1)."""
        if logits.dim() != 2:
            raise ValueError(f"Sampler.sample_batch expects logits of shape (batch, vocab), got {tuple(logits.shape)}")
        processed = self.process(logits, list(generated_ids))
        chosen = self._choose(processed)
        if bool(torch.isneginf(processed.gather(-1, chosen[:, None])).any()):
            raise RuntimeError("no token is allowed: every logit was masked by the processors")
        return chosen.tolist()


def sample_rows(samplers: Sequence[Sampler], logits: torch.Tensor, generated_ids: Sequence[TokenIds]) -> list[int]:
    """One decode step of a continuous batch: row i is sampled by samplers[i] (each with its own params
    and generator). Greedy rows without processors share one arg-max; results cross to the host once."""
    if logits.dim() != 2 or logits.shape[0] != len(samplers):
        raise ValueError(f"sample_rows needs one sampler per logits row, got {len(samplers)} for "
                         f"{tuple(logits.shape)}")
    plain = [not s.processors and s.params.is_greedy for s in samplers]
    picks = logits.argmax(dim=-1) if any(plain) else None
    chosen: list[torch.Tensor] = []
    masked: list[torch.Tensor] = []
    for i, sampler in enumerate(samplers):
        if plain[i]:
            chosen.append(picks[i])
            continue
        processed = sampler.process(logits[i], generated_ids[i])
        chosen.append(sampler._choose(processed))
        masked.append(torch.isneginf(processed[chosen[-1]]))
    if masked and bool(torch.stack(masked).any()):
        raise RuntimeError("no token is allowed: every logit was masked by the processors")
    return torch.stack(chosen).tolist()


# --------------------------------------------------------------------------- stop strings


class StopMatcher:
    """Streaming stop-string filter. `feed(text)` returns (text safe to show now, stopped?). Text that
    could still turn into a stop string is held back; the stop string and all after it are dropped.

    The result never depends on how the text is chunked: it is always the text before the earliest
    occurrence of any stop string, even when one stop string is a prefix of a longer, earlier one.
    """

    def __init__(self, stop_strings: Sequence[str]) -> None:
        if any(not isinstance(s, str) or not s for s in stop_strings):
            raise ValueError("stop strings must be non-empty strings")
        self._stops = tuple(dict.fromkeys(stop_strings))
        # Every proper prefix of every stop string: the suffixes of the stream worth holding back.
        self._prefixes = frozenset(s[:i] for s in self._stops for i in range(1, len(s)))
        self._max_hold = max((len(s) - 1 for s in self._stops), default=0)
        self._pending = ""
        self.stopped = False
        self.matched: str | None = None  # which stop string ended the stream

    def _held_from(self, buf: str) -> int:
        """Start of the longest suffix of buf that is a proper prefix of some stop string."""
        for k in range(min(len(buf), self._max_hold), 0, -1):
            if buf[-k:] in self._prefixes:
                return len(buf) - k
        return len(buf)

    def _earliest(self, buf: str) -> tuple[int, str | None]:
        best, which = -1, None
        for s in self._stops:
            i = buf.find(s)
            if i != -1 and (best == -1 or i < best):
                best, which = i, s
        return best, which

    def feed(self, text: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        if not self._stops:
            return text, False
        buf = self._pending + text
        hit, which = self._earliest(buf)
        held = self._held_from(buf)
        if hit != -1 and held >= hit:
            self._pending, self.stopped, self.matched = "", True, which
            return buf[:hit], True
        # No match yet, or a longer stop string may still begin before the match: wait for more text.
        self._pending = buf[held:]
        return buf[:held], False

    def flush(self) -> str:
        """End of stream: release what was held back (minus any stop string it completes)."""
        if self.stopped:
            return ""
        buf, self._pending = self._pending, ""
        hit, which = self._earliest(buf)
        if hit != -1:
            self.stopped, self.matched = True, which
            return buf[:hit]
        return buf
