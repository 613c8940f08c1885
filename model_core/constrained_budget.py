"""Closing a constrained answer in time: the token budget as part of the constraint.

A constraint alone bounds the *length* of a value (strings, numbers and nesting have limits) but not
the number of tokens the sampler has left: an answer that is still inside a string when
``max_tokens`` runs out would end unparsable. ``BudgetGuard`` keeps the answer closable:

* ``distance(state)`` is the fewest bytes that complete the value from a grammar state, read off
  the state's configuration stacks: the top ``CHARS`` frame needs one byte; below it each ``SEQ``
  frame still needs the minimal length of its remaining children and each ``REPEAT`` frame the
  minimal length of the repetitions it still owes (``node_min_lengths``, a fixed point that also
  covers recursive ``REF`` grammars). The empty stack (complete) is 0.
* With ``left`` tokens to go (this one included), a token is allowed only if the state after it is
  at most ``left - 2`` bytes from complete (the rest of the value plus EOS then fit, because every
  single byte is a token of a byte-level vocabulary). The invariant ``distance <= left - 1`` then
  holds at every step: from a state at distance ``d`` one byte always reaches distance ``d - 1``,
  so a token always remains, and the value closes (shortest way: quotes, brackets, required keys
  with their smallest values) just in time, then EOS.
* The filter is exact but costs a walk per candidate token, so it runs only in the *zone*
  ``distance + window > left - 2``; ``window`` is the largest finite minimal length of any grammar
  node plus the long-token bound, i.e. more than one token can add to the distance when it opens a
  structure. Inside a JSON string, "clean" tokens (plain characters) never raise the distance and
  are kept without walking; only the few others are walked.

Budgets under the value's own minimal length cannot be met; the guard then lets the mask pass
unchanged (finish reason "length", as before).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from model_core.constrained_grammar import ALT, CHARS, DEAD, REF, REPEAT, SEQ, Grammar
from model_core.constrained_vocab import LONG_TOKEN_BYTES

if TYPE_CHECKING:
    from model_core.constrained_vocab import TokenVocabulary

INF = 1 << 40
_F_SEQ, _F_REP = 1, 2  # frame kinds, as in constrained_grammar
_CACHE_LIMIT = 4096


def node_min_lengths(grammar: Grammar) -> list[int]:
    """Fewest bytes each node can match (``INF`` for nodes that match nothing finite)."""
    nodes = grammar.nodes
    best = [INF] * len(nodes)
    changed = True
    while changed:  # Bellman-Ford style: values only fall, and each is a sum of smaller ones
        changed = False
        for nid, node in enumerate(nodes):
            if node.kind == CHARS:
                value = 1 if any(node.table) else INF
            elif node.kind == SEQ:
                value = min(INF, sum(best[c] for c in node.children))
            elif node.kind == ALT:
                value = min((best[c] for c in node.children), default=INF)
            elif node.kind == REPEAT:
                value = 0 if node.min == 0 else min(INF, node.min * best[node.children[0]])
            else:  # REF
                assert node.kind == REF
                value = best[node.target]
            if value < best[nid]:
                best[nid], changed = value, True
    return best


class BudgetGuard:
    """Per-machine memo of closing distances and of the distance each token leads to."""

    def __init__(self, grammar: Grammar, vocab: TokenVocabulary) -> None:
        self.grammar, self.vocab = grammar, vocab
        self.min_len = node_min_lengths(grammar)
        finite = [m for m in self.min_len if m < INF]
        self.window = min(max(finite, default=0), 4096) + LONG_TOKEN_BYTES
        self._distance: dict[int, int] = {}
        self._next: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        size = len(vocab.tokens)
        self._chars = np.full(size, -1, dtype=np.int64)  # characters of a clean token, -1 otherwise
        for part in (vocab.short, vocab.long):
            n = min(size, len(part.clean_chars))
            self._chars[:n] = np.maximum(self._chars[:n], part.clean_chars[:n])
        self._eos = set(vocab.eos_ids)

    def distance(self, sid: int) -> int:
        """Fewest bytes from state ``sid`` to a complete value (0: complete now)."""
        cached = self._distance.get(sid)
        if cached is not None:
            return cached
        nodes, min_len = self.grammar.nodes, self.min_len
        best = INF
        for stack in self.grammar._states[sid]:
            if not stack:
                best = 0
                break
            cost = 1  # the byte the top CHARS frame waits for
            for kind, nid, value in stack[:-1]:
                node = nodes[nid]
                if kind == _F_SEQ:
                    cost += sum(min_len[c] for c in node.children[value + 1:])
                elif kind == _F_REP:
                    cost += max(node.min - value - 1, 0) * min_len[node.children[0]]
            best = min(best, cost)
        if len(self._distance) > 50 * _CACHE_LIMIT:
            self._distance.clear()
        self._distance[sid] = best
        return best

    def in_zone(self, sid: int, left: int) -> bool:
        """Whether the budget can bind within the next token (the exact filter is needed)."""
        return self.distance(sid) + self.window > left - 2

    def _next_distances(self, sid: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate ids, distance after each) for the allowed ``ids`` of state ``sid``."""
        position = self.grammar.string_position(sid)
        clean_ids = ids[self._chars[ids] >= 1] if position is not None else ids[:0]
        if len(clean_ids):
            # n plain characters inside a string: the distance falls by the part of them the
            # string still owes to its minLength, and never rises
            _, count, lo, _ = position
            owed = max(lo - count, 0)
            clean_d = self.distance(sid) - np.minimum(self._chars[clean_ids], owed)
        else:
            clean_d = np.zeros(0, dtype=np.int64)
        walked_ids, walked_d = self._walked(sid, ids if position is None else ids[self._chars[ids] < 1])
        return np.concatenate([clean_ids, walked_ids]), np.concatenate([clean_d, walked_d])

    def _walked(self, sid: int, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cached = self._next.get(sid)
        if cached is not None:
            return cached
        walk, tokens = self.grammar.walk, self.vocab.tokens
        dists = np.empty(len(ids), dtype=np.int64)
        for i, tid in enumerate(ids.tolist()):
            if tid in self._eos:
                dists[i] = -INF  # EOS is the last token: it needs nothing after it
                continue
            nxt = walk(sid, tokens[tid])
            dists[i] = INF if nxt == DEAD else self.distance(nxt)
        if len(self._next) > _CACHE_LIMIT:
            self._next.clear()
        self._next[sid] = (ids, dists)
        return ids, dists

    def blocked(self, sid: int, allowed: np.ndarray, left: int) -> np.ndarray | None:
        """Ids of ``allowed`` to forbid with ``left`` tokens to go; None when nothing changes.

        None too when the budget is already too small for any completion (nothing can help then).
        """
        if not self.in_zone(sid, left) or self.distance(sid) > left - 1:
            return None
        ids, dists = self._next_distances(sid, allowed)
        over = ids[dists > left - 2]
        if len(over) == 0:
            return None
        if len(over) == len(allowed):  # cannot happen while the invariant holds; never mask everything
            return None
        return over
