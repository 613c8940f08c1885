"""Byte-level grammar and its state machine, the core of constrained decoding.

A constraint (JSON schema, regex, choice) is compiled into a small grammar of five node kinds:

* ``CHARS``  - one byte from a set (a 256-entry table);
* ``SEQ``    - children one after another;
* ``ALT``    - any one child;
* ``REPEAT`` - a child ``min..max`` times (``max=None``: unbounded);
* ``REF``    - a forward reference, so that recursive grammars (free-form JSON) can be built.

The grammar runs as a pushdown automaton over **bytes**, not characters: byte-level BPE tokens may
hold half a UTF-8 character, and walking bytes makes such tokens exact instead of approximated.
A *configuration* is a stack of frames ``(kind, node_id, value)`` whose top frame is a ``CHARS``
node waiting for the next byte (the empty stack means "complete"); a *state* is the frozenset of
configurations reachable so far (nondeterminism from ``ALT`` is resolved lazily, like an NFA).
States are interned to small ints so the mask computer can memoise ``(state, byte) -> state``.

Bounds keep every state set finite and every output finite in length: an unbounded ``REPEAT``
caps its counter at ``min`` (beyond it the count no longer matters) and stacks deeper than
``max_stack`` frames are dropped, which bounds the nesting depth of recursive grammars.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

CHARS, SEQ, ALT, REPEAT, REF = range(5)
# frame kinds
_F_CHAR, _F_SEQ, _F_REP = 0, 1, 2

DEAD = -1

Frame = tuple[int, int, int]
Stack = tuple[Frame, ...]


@dataclass(eq=False)
class Node:
    kind: int
    table: bytes = b""  # CHARS: 256 flags, table[b] == 1 when byte b matches
    children: tuple[int, ...] = ()
    min: int = 0
    max: int | None = None
    string_body: bool = False  # REPEAT whose child is one JSON string character (fast mask path)
    target: int = -1  # REF


@dataclass
class Grammar:
    """A grammar under construction, then a state machine once ``start`` is set."""

    max_stack: int = 96
    nodes: list[Node] = field(default_factory=list)
    start: int = -1
    _state_ids: dict[frozenset[Stack], int] = field(default_factory=dict)
    _states: list[frozenset[Stack]] = field(default_factory=list)
    _step_memo: dict[tuple[int, int], int] = field(default_factory=dict)
    _string_pos: dict[int, tuple[tuple, int, int, int] | None] = field(default_factory=dict)
    _canon: dict[tuple[int, int], int] = field(default_factory=dict)
    _nullable: dict[int, bool] = field(default_factory=dict)

    # ---------------------------------------------------------------- building
    def _add(self, node: Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def chars(self, byte_values: Iterable[int]) -> int:
        flags = bytearray(256)
        for b in byte_values:
            flags[b] = 1
        return self._add(Node(CHARS, table=bytes(flags)))

    def byte_range(self, lo: int, hi: int) -> int:
        return self.chars(range(lo, hi + 1))

    def literal(self, data: bytes) -> int:
        return self.seq(*[self.chars([b]) for b in data])

    def seq(self, *children: int) -> int:
        if len(children) == 1:
            return children[0]
        return self._add(Node(SEQ, children=tuple(children)))

    def alt(self, *children: int) -> int:
        if len(children) == 1:
            return children[0]
        return self._add(Node(ALT, children=tuple(children)))

    def repeat(self, child: int, lo: int, hi: int | None, *, string_body: bool = False) -> int:
        if hi is not None and hi < lo:
            raise ValueError(f"repeat bounds {lo}..{hi} are empty")
        return self._add(Node(REPEAT, children=(child,), min=lo, max=hi, string_body=string_body))

    def optional(self, child: int) -> int:
        return self.repeat(child, 0, 1)

    def ref(self) -> int:
        return self._add(Node(REF))

    def set_ref(self, ref: int, target: int) -> None:
        self.nodes[ref].target = target

    # ---------------------------------------------------------------- closure
    def _enter(self, nid: int, stack: Stack, out: set[Stack], seen: set) -> None:
        key = (0, nid, stack)
        if key in seen or len(stack) > self.max_stack:
            return
        seen.add(key)
        node = self.nodes[nid]
        kind = node.kind
        if kind == CHARS:
            out.add(stack + ((_F_CHAR, nid, 0),))
        elif kind == SEQ:
            if node.children:
                self._enter(node.children[0], stack + ((_F_SEQ, nid, 0),), out, seen)
            else:
                self._complete(stack, out, seen)
        elif kind == ALT:
            for child in node.children:
                self._enter(child, stack, out, seen)
        elif kind == REPEAT:
            self._boundary(nid, 0, stack, out, seen)
        else:  # REF
            self._enter(node.target, stack, out, seen)

    def _boundary(self, nid: int, count: int, stack: Stack, out: set[Stack], seen: set) -> None:
        """After ``count`` repetitions of REPEAT node ``nid``: stop here or go for one more."""
        node = self.nodes[nid]
        if node.max is None:
            count = min(count, node.min)  # beyond min an unbounded count is irrelevant
        if count >= node.min:
            self._complete(stack, out, seen)
        if node.max is None or count < node.max:
            self._enter(node.children[0], stack + ((_F_REP, nid, count),), out, seen)

    def _complete(self, stack: Stack, out: set[Stack], seen: set) -> None:
        """The node whose frame is below the top of ``stack`` finished its current child."""
        key = (1, stack)
        if key in seen:
            return
        seen.add(key)
        if not stack:
            out.add(())
            return
        kind, nid, value = stack[-1]
        rest = stack[:-1]
        if kind == _F_SEQ:
            children = self.nodes[nid].children
            if value + 2 == len(children):
                # tail position: completing the last child completes the SEQ, so its frame can go;
                # this keeps loops written as right recursion (see ``text_until``) at constant depth
                self._enter(children[value + 1], rest, out, seen)
            elif value + 1 < len(children):
                self._enter(children[value + 1], rest + ((_F_SEQ, nid, value + 1),), out, seen)
            else:
                self._complete(rest, out, seen)
        else:  # _F_REP
            self._boundary(nid, value + 1, rest, out, seen)

    # ---------------------------------------------------------------- running
    def _intern(self, state: frozenset[Stack]) -> int:
        if not state:
            return DEAD
        sid = self._state_ids.get(state)
        if sid is None:
            sid = len(self._states)
            self._state_ids[state] = sid
            self._states.append(state)
        return sid

    def initial(self) -> int:
        if self.start < 0:
            raise RuntimeError("grammar has no start node")
        out: set[Stack] = set()
        self._enter(self.start, (), out, set())
        return self._intern(frozenset(out))

    def step(self, sid: int, byte: int) -> int:
        """State after reading ``byte`` in state ``sid`` (``DEAD`` when not allowed)."""
        key = (sid, byte)
        nxt = self._step_memo.get(key)
        if nxt is not None:
            return nxt
        out: set[Stack] = set()
        seen: set = set()
        for stack in self._states[sid]:
            if stack and self.nodes[stack[-1][1]].table[byte]:
                self._complete(stack[:-1], out, seen)
        nxt = self._intern(frozenset(out))
        self._step_memo[key] = nxt
        return nxt

    def walk(self, sid: int, data: bytes) -> int:
        for byte in data:
            sid = self.step(sid, byte)
            if sid == DEAD:
                return DEAD
        return sid

    def accepts(self, sid: int) -> bool:
        return () in self._states[sid]

    def is_final(self, sid: int) -> bool:
        """Complete and nothing may follow: generation must stop here."""
        return self._states[sid] == frozenset({()})

    def string_position(self, sid: int) -> tuple[tuple, int, int, int] | None:
        """``(context, count, min, max)`` when ``sid`` is exactly "between two characters of a JSON
        string" (``context`` identifies the string and everything around it).

        Only then the mask computer may treat every clean token of n characters as allowed iff
        ``count + n <= max`` without walking it byte by byte.
        """
        if sid in self._string_pos:
            return self._string_pos[sid]
        result = None
        state = self._states[sid]
        sample = next((s for s in state if s), None)
        if sample is not None:
            for i in range(len(sample) - 1, -1, -1):
                kind, nid, count = sample[i]
                node = self.nodes[nid]
                if kind == _F_REP and node.string_body:
                    out: set[Stack] = set()
                    self._boundary(nid, count, sample[:i], out, set())
                    if frozenset(out) == state and node.max is not None:
                        result = ((sample[:i], nid), count, node.min, node.max)
                    break
        self._string_pos[sid] = result
        return result

    def nullable(self, nid: int) -> bool:
        """Can node ``nid`` match the empty string? (REF cycles count as not nullable.)"""
        cached = self._nullable.get(nid)
        if cached is not None:
            return cached
        self._nullable[nid] = False  # cycle guard
        node = self.nodes[nid]
        if node.kind == CHARS:
            result = False
        elif node.kind == SEQ:
            result = all(self.nullable(c) for c in node.children)
        elif node.kind == ALT:
            result = any(self.nullable(c) for c in node.children)
        elif node.kind == REPEAT:
            result = node.min == 0 or self.nullable(node.children[0])
        else:
            result = self.nullable(node.target)
        self._nullable[nid] = result
        return result

    def mask_key(self, sid: int, window: int) -> int:
        """A canonical state with the same allowed tokens as ``sid`` for tokens of < ``window`` bytes.

        A repeat counter ``c`` with ``min <= c`` and ``max - c >= window`` can neither reach ``max``
        nor drop below ``min`` within one token, so it is replaced by ``min``: the thousands of
        positions inside a long string then share one cached mask instead of one each.
        """
        key = (sid, window)
        cached = self._canon.get(key)
        if cached is not None:
            return cached
        stacks = []
        for stack in self._states[sid]:
            frames = []
            for kind, nid, value in stack:
                node = self.nodes[nid]
                if (kind == _F_REP and node.max is not None and node.min <= value
                        and node.max - value >= window and not self.nullable(node.children[0])):
                    value = node.min
                frames.append((kind, nid, value))
            stacks.append(tuple(frames))
        canon = self._intern(frozenset(stacks))
        self._canon[key] = canon
        return canon

    def size(self) -> dict[str, int]:
        return {"nodes": len(self.nodes), "states": len(self._states), "transitions": len(self._step_memo)}


def text_until(g: Grammar, marker: bytes, then: int) -> int:
    """Free bytes that do not contain ``marker``, then ``marker``, then node ``then``.

    Built as the KMP automaton of ``marker`` (one node per matched prefix length, each a right-
    recursive loop, which tail calls keep at constant stack depth), so the free part is
    deterministic and ends exactly at the first occurrence of the marker: this is how an R1 model
    reasons freely up to ``</think>`` before its constrained answer.
    """
    if not marker:
        return then
    states = [g.ref() for _ in range(len(marker))]

    def next_state(matched: int, byte: int) -> int:
        text = marker[:matched] + bytes([byte])
        for k in range(min(len(text), len(marker)), 0, -1):
            if text.endswith(marker[:k]):
                return k
        return 0

    for matched, ref in enumerate(states):
        by_target: dict[int, list[int]] = {}
        for byte in range(256):
            by_target.setdefault(next_state(matched, byte), []).append(byte)
        options = [g.seq(g.chars(bs), then if target == len(marker) else states[target])
                   for target, bs in sorted(by_target.items())]
        g.set_ref(ref, g.alt(*options))
    return states[0]
