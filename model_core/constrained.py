"""Structured output: logits processors that constrain decoding token by token.

Public API::

    c = constraint_from_response_format(response_format, vocab, eos_ids)   # json_object / json_schema
    c = choice_constraint(["yes", "no"], vocab, eos_ids)
    c = regex_constraint(r"[A-Z]{3}-\\d{2,4}", vocab, eos_ids)
    logits = c.processor(generated_ids, logits)   # disallowed ids -> -inf (mlx-lm processor shape)
    c.advance(token_id); c.is_complete(); c.must_stop()

``vocab`` is a list with one entry per token id: the token's exact ``bytes`` (best: see
``token_bytes_from_pieces`` for byte-level BPE and SentencePiece vocabularies), a ``str`` (taken as
UTF-8), or ``None`` / ``""`` for tokens that must never be produced (special tokens). It may also be
a prebuilt ``TokenVocabulary``; one is built and cached per vocabulary list otherwise.

How a step works: the constraint is compiled to a byte-level pushdown machine
(``constrained_grammar``). The allowed-token mask of a machine state is found by walking a trie of
all token byte strings through the machine and pruning dead branches; inside a JSON string, where
nearly every token is allowed, a vectorised shortcut admits every "clean" token (complete UTF-8,
no quote/backslash/control character) of at most the remaining length and walks only the few others.
Masks and transitions are memoised per state, and compiled machines are shared between requests
with the same format, so repeated schemas get cheaper. Masks are keyed by a canonical state in
which repeat counters far from their bounds are normalised, so the hundreds of positions inside a
long string share one mask. EOS is allowed only in a complete state, and is the only choice once
nothing else may follow (forced termination).

Engine hook (one processor per request, built before generation so a bad schema fails up front)::

    vocab = vocabulary_for_tokenizer(engine.tokenizer, engine.stop_token_ids)   # cached per tokenizer
    c = constraint_from_response_format(params.response_format, vocab, (),
                                        after="</think>" if engine.is_r1 else None)
    sampler = Sampler(params, [c.processor])

The vocabulary must be able to spell every byte (byte-level BPE and byte-fallback vocabularies
can); a vocabulary with holes may reach a state no token continues, and the sampler then reports
that every logit is masked. Outputs are bounded (strings, numbers, nesting; see
``constrained_schema``), and with ``max_tokens`` the constraint also closes the value in time for
the token budget (``constrained_budget``); only a budget below the value's minimal length still
ends with finish reason "length" and an incomplete value.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from model_core.constrained_budget import BudgetGuard
from model_core.constrained_grammar import DEAD, Grammar, text_until
from model_core.constrained_regex import compile_regex
from model_core.constrained_schema import DEFAULT_MAX_STRING_CHARS, compile_json_object, compile_json_schema
from model_core.constrained_vocab import (
    LONG_TOKEN_BYTES,
    TokenVocabulary,
    VocabPart,
    token_bytes_from_pieces,
    token_bytes_from_tokenizer,
    vocabulary_for_tokenizer,
)

__all__ = [
    "DEFAULT_MAX_STRING_CHARS", "Constraint", "TokenVocabulary", "choice_constraint",
    "constraint_from_response_format", "regex_constraint", "token_bytes_from_pieces",
    "token_bytes_from_tokenizer", "vocabulary_for_tokenizer",
]

_MASK_CACHE_LIMIT = 4096
_EMPTY = np.zeros(0, dtype=np.int64)


class _Machine:
    """A compiled grammar bound to a vocabulary: memoised masks shared by all its constraints."""

    def __init__(self, grammar: Grammar, vocab: TokenVocabulary) -> None:
        self.grammar, self.vocab = grammar, vocab
        self.initial = grammar.initial()
        # a token can move a repeat counter by at most its byte length (see Grammar.mask_key)
        self.window = LONG_TOKEN_BYTES + 1
        self.long_window = max((len(t) for t in vocab.tokens if t), default=0) + 1
        self._short: dict[int, np.ndarray] = {}  # canonical state -> allowed short ids (+ EOS)
        self._long: dict[int, np.ndarray] = {}  # exact state -> allowed long ids
        self._masks: dict[tuple, torch.Tensor] = {}
        self._jumps: dict[tuple[int, int], int] = {}
        self._suffix_ok: dict[tuple, bool] = {}
        self.eos = np.asarray(sorted(vocab.eos_ids), dtype=np.int64)
        self.lock = threading.Lock()
        self._guard: BudgetGuard | None = None

    @property
    def guard(self) -> BudgetGuard:
        """Closing distances for token budgets (built on first use: most requests never need it)."""
        if self._guard is None:
            self._guard = BudgetGuard(self.grammar, self.vocab)
        return self._guard

    def _part_ids(self, sid: int, part: VocabPart, clip: int) -> list[int]:
        pos = self.grammar.string_position(sid)
        if pos is not None:
            return self._string_tokens(sid, part, clip, *pos)
        found: list[int] = []
        self._walk_trie(sid, part.trie, found)
        return found

    def short_ids(self, canon: int) -> np.ndarray:
        cached = self._short.get(canon)
        if cached is None:
            g = self.grammar
            if g.is_final(canon):
                cached = self.eos
            else:
                found = self._part_ids(canon, self.vocab.short, self.window)
                if g.accepts(canon):
                    found.extend(self.eos.tolist())
                cached = np.unique(np.asarray(found, dtype=np.int64))
            if len(self._short) > _MASK_CACHE_LIMIT:
                self._short.clear()
            self._short[canon] = cached
        return cached

    def long_ids(self, sid: int) -> np.ndarray:
        if not self.vocab.long.trie[0] or self.grammar.is_final(sid):
            return _EMPTY
        cached = self._long.get(sid)
        if cached is None:
            cached = np.asarray(self._part_ids(sid, self.vocab.long, self.long_window), dtype=np.int64)
            if len(self._long) > _MASK_CACHE_LIMIT:
                self._long.clear()
            self._long[sid] = cached
        return cached

    def allowed_ids(self, sid: int) -> np.ndarray:
        short = self.short_ids(self.grammar.mask_key(sid, self.window))
        return np.union1d(short, self.long_ids(sid))

    def _walk_trie(self, sid: int, trie: list, found: list[int]) -> None:
        step = self.grammar.step
        todo = [(trie, sid)]
        while todo:
            node, state = todo.pop()
            for byte, child in node[0].items():
                nxt = step(state, byte)
                if nxt == DEAD:
                    continue
                if child[1]:
                    found.extend(child[1])
                if child[0]:
                    todo.append((child, nxt))

    def _jump(self, sid: int, chars: int) -> int:
        """State after ``chars`` more plain characters of the current JSON string."""
        key = (sid, chars)
        nxt = self._jumps.get(key)
        if nxt is None:
            nxt = sid
            for _ in range(chars):
                nxt = self.grammar.step(nxt, 0x61)  # 'a': every plain char leads to the same state
            self._jumps[key] = nxt
        return nxt

    def _string_tokens(
        self, sid: int, part: VocabPart, clip: int, context: tuple, count: int, lo: int, hi: int,
    ) -> list[int]:
        """Allowed tokens of ``part`` between two characters of a JSON string (module docstring)."""
        clean = part.clean_chars
        allowed = np.nonzero((clean >= 1) & (clean <= hi - count))[0].tolist()
        walk, suffix_ok, tokens = self.grammar.walk, self._suffix_ok, self.vocab.tokens
        for tid, prefix_bytes, prefix_chars in part.unclean:
            at = count + prefix_chars
            if at > hi:
                continue
            # whether the rest of the token fits depends on the string's surroundings and on how
            # far ``at`` is from min/max (clipped: a suffix has < clip chars), not on ``count``
            key = (context, tid, min(max(lo - at, 0), clip), min(hi - at, clip))
            ok = suffix_ok.get(key)
            if ok is None:
                state = self._jump(sid, prefix_chars) if prefix_chars else sid
                ok = state != DEAD and walk(state, tokens[tid][prefix_bytes:]) != DEAD
                if len(suffix_ok) > 50 * _MASK_CACHE_LIMIT:
                    suffix_ok.clear()
                suffix_ok[key] = ok
            if ok:
                allowed.append(tid)
        return allowed

    def apply(self, sid: int, logits: torch.Tensor) -> torch.Tensor:
        """``logits`` with every token not allowed in state ``sid`` set to -inf."""
        size = logits.shape[-1]
        canon = self.grammar.mask_key(sid, self.window)
        key = (canon, size, logits.dtype, logits.device)
        bias = self._masks.get(key)
        if bias is None:
            ids = self.short_ids(canon)
            bias = torch.full((size,), float("-inf"), dtype=logits.dtype)
            bias[torch.from_numpy(ids[ids < size])] = 0.0
            bias = bias.to(logits.device)
            if len(self._masks) > _MASK_CACHE_LIMIT // 4:
                self._masks.clear()
            self._masks[key] = bias
        out = logits + bias  # one fused op; the cached bias is shared by every position it fits
        extra = self.long_ids(sid)
        if len(extra):
            index = torch.from_numpy(extra[extra < size]).to(logits.device)
            out[..., index] = logits[..., index]
        return out


class Constraint:
    """The per-request cursor over a compiled machine; not shared between sequences."""

    def __init__(self, machine: _Machine, description: str, max_tokens: int | None = None) -> None:
        self._m = machine
        self.description = description
        self.max_tokens = max_tokens  # the sampler's budget: close the value before it runs out
        self.state = machine.initial
        self.finished = False  # EOS consumed
        self.output = bytearray()
        self._base: int | None = None  # len(generated_ids) at the first processor call
        self._consumed = 0

    def advance(self, token_id: int) -> None:
        """Feed the token the sampler chose; raises ``ValueError`` if the constraint forbids it."""
        m = self._m
        self._consumed += 1
        if token_id in m.vocab.eos_ids:
            if not m.grammar.accepts(self.state):
                raise ValueError(f"EOS token {token_id} before the {self.description} is complete")
            self.finished = True
            return
        if self.finished:
            raise ValueError(f"token {token_id} after EOS under the {self.description} constraint")
        data = m.vocab.tokens[token_id] if 0 <= token_id < len(m.vocab.tokens) else None
        nxt = DEAD if not data else m.grammar.walk(self.state, data)
        if nxt == DEAD:
            raise ValueError(f"token {token_id} ({data!r}) is not allowed by the {self.description} constraint here")
        self.state = nxt
        self.output += data

    def is_complete(self) -> bool:
        """The output so far is a complete value (EOS is allowed now)."""
        return self.finished or self._m.grammar.accepts(self.state)

    def must_stop(self) -> bool:
        """Complete and nothing may follow: EOS is the only allowed token."""
        return self.finished or self._m.grammar.is_final(self.state)

    def allowed_token_ids(self) -> list[int]:
        if self.finished:
            return self._m.eos.tolist()
        return self._m.allowed_ids(self.state).tolist()

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace")

    def _sync(self, generated_ids: Sequence[int] | torch.Tensor) -> None:
        ids = generated_ids.tolist() if isinstance(generated_ids, torch.Tensor) else list(generated_ids)
        if ids and isinstance(ids[0], list):  # (1, n) tensor
            ids = ids[0]
        if self._base is None:
            # first call: whatever the engine passes (prompt or nothing) precedes the completion
            self._base = len(ids) - self._consumed
        for token_id in ids[self._base + self._consumed:]:
            self.advance(int(token_id))

    def _close_in_time(self, logits: torch.Tensor) -> None:
        """Forbid tokens after which the value could no longer close within the budget (in place)."""
        m = self._m
        left = self.max_tokens - self._consumed  # tokens still to sample, this one included
        if not m.guard.in_zone(self.state, left):
            return
        blocked = m.guard.blocked(self.state, m.allowed_ids(self.state), left)
        if blocked is not None:
            index = torch.from_numpy(blocked[blocked < logits.shape[-1]]).to(logits.device)
            logits[..., index] = float("-inf")

    def processor(self, generated_ids: Sequence[int] | torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Logits processor: catch up with tokens not yet ``advance``d, then mask the rest to -inf."""
        with self._m.lock:
            self._sync(generated_ids)
            if not self.finished:
                out = self._m.apply(self.state, logits)
                if self.max_tokens is not None:
                    self._close_in_time(out)
                return out
        out = torch.full_like(logits, float("-inf"))
        index = torch.from_numpy(self._m.eos).to(logits.device)
        out[..., index] = logits[..., index]
        return out


# ---------------------------------------------------------------- construction

_MACHINES: dict[tuple[str, int], _Machine] = {}
_MACHINES_LOCK = threading.Lock()
_MACHINE_LIMIT = 64
_STATE_LIMIT = 200_000


def _machine(key: str, vocab: TokenVocabulary, build: Callable[[Grammar], int], after: str | None = None,
             ) -> _Machine:
    """The shared machine for ``key``; with ``after``, free text up to that marker comes first."""
    if after is not None:
        if not isinstance(after, str) or not after:
            raise ValueError("'after' must be a non-empty string such as '</think>'")
        key = f"after:{after!r}:{key}"
        inner = build

        def build(g: Grammar) -> int:
            # up to two spaces/newlines may follow the marker before the value ("</think>\n\n{")
            return text_until(g, after.encode("utf-8"), g.seq(g.repeat(g.chars(b" \n"), 0, 2), inner(g)))

    cache_key = (key, id(vocab))
    with _MACHINES_LOCK:
        machine = _MACHINES.get(cache_key)
        # a machine's memo tables only grow; past a bound, new requests get a fresh one (running
        # constraints keep theirs), so a long-lived worker's memory stays bounded
        if machine is not None and machine.vocab is vocab and len(machine.grammar._states) < _STATE_LIMIT:
            return machine
    grammar = Grammar()
    grammar.start = build(grammar)
    machine = _Machine(grammar, vocab)
    with _MACHINES_LOCK:
        if len(_MACHINES) >= _MACHINE_LIMIT:
            _MACHINES.pop(next(iter(_MACHINES)))
        _MACHINES[cache_key] = machine
    return machine


def constraint_from_response_format(
    response_format: dict[str, Any],
    tokenizer_vocab: Sequence[bytes | str | None] | TokenVocabulary,
    eos_ids: Iterable[int],
    *,
    max_string_chars: int = DEFAULT_MAX_STRING_CHARS,
    after: str | None = None,
    max_tokens: int | None = None,
) -> Constraint:
    """A constraint for an OpenAI-style ``response_format``; ``ValueError`` if it cannot be enforced.

    Types: ``json_object``; ``json_schema`` (``{"json_schema": {"name", "schema"}}``); and two
    Verity extensions, ``{"type": "choice", "choices": [...]}`` and ``{"type": "regex", "pattern": ...}``.
    ``after="</think>"`` (R1 checkpoints) leaves the reasoning free and constrains what follows it.
    ``max_tokens``: the sampler's token budget; the value is then closed in time to fit it (and EOS),
    see ``constrained_budget``.
    """
    if not isinstance(response_format, dict) or "type" not in response_format:
        raise ValueError("response_format must be an object with a 'type'")
    kind = response_format["type"]
    vocab = TokenVocabulary.get(tokenizer_vocab, eos_ids)
    if kind == "json_object":
        machine = _machine(f"json_object:{max_string_chars}", vocab,
                           lambda g: compile_json_object(g, max_string_chars), after)
        return Constraint(machine, "JSON object", max_tokens)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or "schema" not in spec:
            raise ValueError("response_format.json_schema must be an object with a 'schema'")
        schema = spec["schema"]
        key = "json_schema:" + json.dumps(schema, sort_keys=True) + f":{max_string_chars}"
        machine = _machine(key, vocab, lambda g: compile_json_schema(g, schema, max_string_chars), after)
        return Constraint(machine, f"JSON schema {spec.get('name', '')!r}".rstrip(), max_tokens)
    if kind == "choice":
        return choice_constraint(response_format.get("choices") or [], vocab, (), after=after,
                                 max_tokens=max_tokens)
    if kind == "regex":
        return regex_constraint(response_format.get("pattern") or "", vocab, (), after=after,
                                max_tokens=max_tokens)
    if kind == "text":
        raise ValueError("response_format type 'text' needs no constraint; do not build one")
    raise ValueError(f"unsupported response_format type {kind!r} "
                     "(expected 'json_object', 'json_schema', 'choice' or 'regex')")


def choice_constraint(
    choices: Sequence[str], tokenizer_vocab: Sequence[bytes | str | None] | TokenVocabulary, eos_ids: Iterable[int],
    *, after: str | None = None, max_tokens: int | None = None,
) -> Constraint:
    """The output is exactly one of ``choices``."""
    if not choices or not all(isinstance(c, str) and c for c in choices):
        raise ValueError("choice constraint needs a non-empty list of non-empty strings")
    vocab = TokenVocabulary.get(tokenizer_vocab, eos_ids)
    machine = _machine("choice:" + json.dumps(list(choices)), vocab,
                       lambda g: g.alt(*[g.literal(c.encode("utf-8")) for c in dict.fromkeys(choices)]), after)
    return Constraint(machine, "choice", max_tokens)


def regex_constraint(
    pattern: str, tokenizer_vocab: Sequence[bytes | str | None] | TokenVocabulary, eos_ids: Iterable[int],
    *, after: str | None = None, max_tokens: int | None = None,
) -> Constraint:
    """The whole output matches ``pattern`` (subset of ``re`` syntax; see ``constrained_regex``)."""
    vocab = TokenVocabulary.get(tokenizer_vocab, eos_ids)
    machine = _machine("regex:" + pattern, vocab, lambda g: compile_regex(g, pattern), after)
    return Constraint(machine, f"regex {pattern!r}", max_tokens)
