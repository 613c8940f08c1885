"""Regular expressions and UTF-8 character classes compiled into a byte-level grammar.

Supported regex subset (full-match semantics, like ``re.fullmatch``): literals, escapes
(``\\d \\w \\s \\D \\W \\S`` and escaped metacharacters), ``.``, classes ``[a-z0-9_]`` and negated
classes ``[^...]`` (ASCII members only), groups ``(...)``, ``(?:...)``, ``(?P<name>...)``,
alternation ``|``, quantifiers ``? * + {m} {m,} {m,n}`` (a trailing lazy ``?`` is accepted and means
nothing here), and ``^``/``$`` at the very ends. ``\\d \\w \\s`` have their ``re.ASCII`` meaning
(the output matches ``re.fullmatch(pattern, text, re.ASCII)``). Anything else (back-references, look-around,
``\\b``, flags) raises ``ValueError`` naming the construct and its position, because a constraint
that silently matched something else would be worse than none.

Classes are sets of Unicode characters; they become byte alternatives through UTF-8, so a model
with a byte-level BPE vocabulary can produce any character of the class, whole or split.
"""

from __future__ import annotations

from model_core.constrained_grammar import Grammar

_DIGITS = set("0123456789")
_WORD = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_SPACE = set(" \t\n\r\f\v")
_CLASS_ESCAPES = {"d": (_DIGITS, False), "w": (_WORD, False), "s": (_SPACE, False),
                  "D": (_DIGITS, True), "W": (_WORD, True), "S": (_SPACE, True)}
_LITERAL_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}
_META = set("\\.^$|?*+()[]{}-/ \"'")


def utf8_multibyte(g: Grammar) -> int:
    """Any well-formed UTF-8 character of 2-4 bytes (no surrogates, no overlongs)."""
    cont = g.byte_range(0x80, 0xBF)
    return g.alt(
        g.seq(g.byte_range(0xC2, 0xDF), cont),
        g.seq(g.chars([0xE0]), g.byte_range(0xA0, 0xBF), cont),
        g.seq(g.chars([*range(0xE1, 0xED), 0xEE, 0xEF]), cont, cont),
        g.seq(g.chars([0xED]), g.byte_range(0x80, 0x9F), cont),
        g.seq(g.chars([0xF0]), g.byte_range(0x90, 0xBF), cont, cont),
        g.seq(g.byte_range(0xF1, 0xF3), cont, cont, cont),
        g.seq(g.chars([0xF4]), g.byte_range(0x80, 0x8F), cont, cont),
    )


def char_class(g: Grammar, chars: set[str], negated: bool, where: str = "") -> int:
    """A node matching one character of ``chars`` (or, negated, any character outside it)."""
    ascii_members = {ord(c) for c in chars if ord(c) < 128}
    wide = sorted(c for c in chars if ord(c) >= 128)
    if negated:
        if wide:
            raise ValueError(f"negated character class with non-ASCII members is not supported{where}")
        return g.alt(g.chars(b for b in range(128) if b not in ascii_members), utf8_multibyte(g))
    options = [g.chars(ascii_members)] if ascii_members else []
    options += [g.literal(c.encode("utf-8")) for c in wide]
    if not options:
        raise ValueError(f"empty character class{where}")
    return g.alt(*options)


class _RegexParser:
    def __init__(self, g: Grammar, pattern: str) -> None:
        self.g, self.p, self.i = g, pattern, 0

    def error(self, what: str) -> ValueError:
        return ValueError(f"regex {self.p!r}: {what} at position {self.i} is not supported")

    def peek(self) -> str | None:
        return self.p[self.i] if self.i < len(self.p) else None

    def take(self) -> str:
        if self.i >= len(self.p):
            raise ValueError(f"regex {self.p!r}: unexpected end of pattern")
        ch = self.p[self.i]
        self.i += 1
        return ch

    def parse(self) -> int:
        if self.peek() == "^":
            self.i += 1
        node = self.alternation()
        if self.peek() == "$" and self.i == len(self.p) - 1:
            self.i += 1
        if self.i != len(self.p):
            raise self.error(f"{self.p[self.i]!r}")
        return node

    def alternation(self) -> int:
        options = [self.concat()]
        while self.peek() == "|":
            self.i += 1
            options.append(self.concat())
        return self.g.alt(*options)

    def concat(self) -> int:
        items: list[int] = []
        while self.peek() not in (None, "|", ")"):
            if self.peek() == "$" and self.i == len(self.p) - 1:
                break
            items.append(self.quantified(self.atom()))
        return self.g.seq(*items) if items else self.g.seq()

    def quantified(self, node: int) -> int:
        ch = self.peek()
        if ch == "?":
            lo, hi = 0, 1
        elif ch == "*":
            lo, hi = 0, None
        elif ch == "+":
            lo, hi = 1, None
        elif ch == "{" and self._looks_like_braces():
            return self.quantified_braces(node)
        else:
            return node
        self.i += 1
        if self.peek() == "?":  # lazy quantifier: same language
            self.i += 1
        return self.g.repeat(node, lo, hi)

    def _looks_like_braces(self) -> bool:
        end = self.p.find("}", self.i)
        body = self.p[self.i + 1:end] if end > 0 else ""
        return bool(body) and all(c.isdigit() or c == "," for c in body) and body[0].isdigit()

    def quantified_braces(self, node: int) -> int:
        end = self.p.index("}", self.i)
        body = self.p[self.i + 1:end]
        self.i = end + 1
        lo_s, sep, hi_s = body.partition(",")
        lo = int(lo_s)
        hi = (int(hi_s) if hi_s else None) if sep else lo
        if hi is not None and hi < lo:
            raise ValueError(f"regex {self.p!r}: quantifier {{{body}}} has max < min")
        if self.peek() == "?":
            self.i += 1
        return self.g.repeat(node, lo, hi)

    def atom(self) -> int:
        ch = self.take()
        if ch == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?P<", self.i):
                self.i = self.p.index(">", self.i) + 1
            elif self.peek() == "?":
                raise self.error("group modifier '(?'")
            node = self.alternation()
            if self.take() != ")":
                raise self.error("unbalanced '('")
            return node
        if ch == "[":
            return self.char_class_body()
        if ch == ".":
            return char_class(self.g, {"\n"}, True)
        if ch == "\\":
            return self.escape(in_class=False)
        if ch in "*+?{":
            raise self.error(f"quantifier {ch!r} without an operand")
        if ch in ")^$":
            raise self.error(repr(ch))
        return self.g.literal(ch.encode("utf-8"))

    def escape(self, in_class: bool) -> int:
        ch = self.take()
        if ch in _CLASS_ESCAPES:
            chars, negated = _CLASS_ESCAPES[ch]
            return char_class(self.g, set(chars), negated)
        if ch in _LITERAL_ESCAPES:
            return self.g.literal(_LITERAL_ESCAPES[ch].encode())
        if ch in _META:
            return self.g.literal(ch.encode("utf-8"))
        raise self.error(f"escape '\\{ch}'")

    def _class_char(self) -> tuple[set[str], bool]:
        """One member of a [...] class: a char or a class escape; returns (set, is_single)."""
        ch = self.take()
        if ch != "\\":
            return {ch}, True
        esc = self.take()
        if esc in _CLASS_ESCAPES:
            chars, negated = _CLASS_ESCAPES[esc]
            if negated:
                raise self.error(f"'\\{esc}' inside a class")
            return set(chars), False
        if esc in _LITERAL_ESCAPES:
            return {_LITERAL_ESCAPES[esc]}, True
        if esc in _META or not esc.isalnum():
            return {esc}, True
        raise self.error(f"escape '\\{esc}' in a class")

    def char_class_body(self) -> int:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        members: set[str] = set()
        first = True
        while first or self.peek() != "]":
            if self.peek() is None:
                raise ValueError(f"regex {self.p!r}: unterminated character class")
            first = False
            chars, single = self._class_char()
            if single and self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                hi_chars, hi_single = self._class_char()
                lo, hi = ord(next(iter(chars))), ord(next(iter(hi_chars)))
                if not hi_single or hi < lo:
                    raise self.error("bad class range")
                if hi - lo > 4096:
                    raise self.error("class range wider than 4096 characters")
                chars = {chr(c) for c in range(lo, hi + 1)}
            members |= chars
        self.i += 1
        return char_class(self.g, members, negated, f" in regex {self.p!r}")


def compile_regex(g: Grammar, pattern: str) -> int:
    """Compile ``pattern`` into ``g`` and return its node (full-match semantics)."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("regex constraint needs a non-empty pattern string")
    return _RegexParser(g, pattern).parse()
