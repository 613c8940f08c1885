"""JSON Schema (and free-form JSON) compiled into a byte-level grammar.

Supported, per schema node (``path`` in errors is a JSON pointer into the schema):

* ``type`` (one or a list) of ``object``, ``array``, ``string``, ``integer``, ``number``,
  ``boolean``, ``null``; ``enum``; ``const``; ``anyOf``; local ``$ref`` (``#/$defs/...``,
  ``#/definitions/...``, non-recursive); the empty schema / ``true`` (any JSON value);
* objects: ``properties``, ``required``, ``additionalProperties`` (``false``, ``true``, or a schema
  when there are no ``properties`` - a string-keyed map). Declared properties are emitted in
  declaration order; optional ones may be skipped; undeclared ones are never invented;
* arrays: ``items`` (one schema), ``minItems``, ``maxItems``; ``uniqueItems: false``;
* strings: ``minLength``, ``maxLength`` (counted in characters, escapes count as one);
* integers: ``minimum`` of 0 or 1 (drops the sign / the zero); other numeric bounds are refused.

Everything else (``pattern``, ``format``, ``oneOf``, ``allOf``, ``not``, ``uniqueItems: true``,
``minProperties``, recursive ``$ref``, ...) raises ``ValueError`` naming the keyword and path:
the engine refuses what it cannot guarantee instead of emitting output that fails validation.

Output is compact JSON: the only whitespace allowed is one optional space after ``:`` and ``,``
(so a model cannot spin in whitespace). Every string is bounded (``maxLength`` or
``DEFAULT_MAX_STRING_CHARS``), numbers have at most 15 integer and 15 fraction digits, and free-form
JSON nests at most about 16 levels, so every value the grammar admits is finite.
"""

from __future__ import annotations

import json
from typing import Any

from model_core.constrained_grammar import Grammar
from model_core.constrained_regex import utf8_multibyte

DEFAULT_MAX_STRING_CHARS = 256
_ANNOTATIONS = {"title", "description", "default", "examples", "$schema", "$id", "$comment",
                "deprecated", "readOnly", "writeOnly"}
_COMMON = {"type", "enum", "const", "anyOf", "$ref", "$defs", "definitions"} | _ANNOTATIONS
_BY_TYPE = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems", "uniqueItems"},
    "string": {"minLength", "maxLength"},
    "integer": {"minimum"},
    "number": set(),
    "boolean": set(),
    "null": set(),
}
_TYPES = tuple(_BY_TYPE)


class JsonGrammar:
    """Builds JSON grammar nodes into one ``Grammar``, sharing the primitive nodes."""

    def __init__(self, g: Grammar, max_string_chars: int = DEFAULT_MAX_STRING_CHARS) -> None:
        self.g = g
        self.max_string_chars = max_string_chars
        self.ws = g.optional(g.chars(b" "))
        self.comma = g.seq(g.chars(b","), self.ws)
        self.colon = g.seq(g.chars(b":"), self.ws)
        hexd = g.chars(b"0123456789abcdefABCDEF")
        non_surrogate_u = g.alt(
            g.seq(g.chars(b"0123456789abcefABCEF"), hexd, hexd, hexd),
            g.seq(g.chars(b"dD"), g.chars(b"01234567"), hexd, hexd),
        )
        escape = g.seq(g.chars(b"\\"), g.alt(g.chars(b'"\\/bfnrt'), g.seq(g.chars(b"u"), non_surrogate_u)))
        plain = g.chars(b for b in range(0x20, 0x80) if b not in (0x22, 0x5C))
        self.string_char = g.alt(plain, utf8_multibyte(g), escape)
        self.quote = g.chars(b'"')
        self.digit = g.chars(b"0123456789")
        nonzero = g.chars(b"123456789")
        self.natural = g.alt(g.chars(b"0"), g.seq(nonzero, g.repeat(self.digit, 0, 14)))
        self.positive = g.seq(nonzero, g.repeat(self.digit, 0, 14))
        minus = g.optional(g.chars(b"-"))
        self.integer = g.seq(minus, self.natural)
        fraction = g.optional(g.seq(g.chars(b"."), g.repeat(self.digit, 1, 15)))
        exponent = g.optional(g.seq(g.chars(b"eE"), g.optional(g.chars(b"+-")), g.repeat(self.digit, 1, 2)))
        self.number = g.seq(minus, self.natural, fraction, exponent)
        self.boolean = g.alt(g.literal(b"true"), g.literal(b"false"))
        self.null = g.literal(b"null")
        self._strings: dict[tuple[int, int], int] = {}
        self._any: int | None = None

    # ------------------------------------------------------------ primitives
    def string(self, lo: int = 0, hi: int | None = None) -> int:
        hi = self.max_string_chars if hi is None else hi
        key = (lo, hi)
        if key not in self._strings:
            body = self.g.repeat(self.string_char, lo, hi, string_body=True)
            self._strings[key] = self.g.seq(self.quote, body, self.quote)
        return self._strings[key]

    def value_literal(self, value: Any) -> int:
        return self.g.literal(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))

    def members(self, member: int) -> int:
        """``{}`` or ``{m, m, ...}`` with the given member node."""
        g = self.g
        more = g.repeat(g.seq(self.comma, member), 0, None)
        return g.seq(g.chars(b"{"), g.optional(g.seq(member, more)), g.chars(b"}"))

    def array(self, item: int, lo: int = 0, hi: int | None = None) -> int:
        g = self.g
        if hi == 0:
            return g.literal(b"[]")
        rest = g.repeat(g.seq(self.comma, item), max(lo - 1, 0), None if hi is None else hi - 1)
        elements = g.seq(item, rest)
        return g.seq(g.chars(b"["), elements if lo > 0 else g.optional(elements), g.chars(b"]"))

    def any_value(self) -> int:
        """Any JSON value (recursive through a REF; depth bounded by the grammar's stack limit)."""
        if self._any is None:
            g = self.g
            ref = g.ref()
            obj = self.members(g.seq(self.string(), self.colon, ref))
            target = g.alt(obj, self.array(ref), self.string(), self.number, self.boolean, self.null)
            g.set_ref(ref, target)
            self._any = ref
        return self._any

    def any_object(self) -> int:
        return self.members(self.g.seq(self.string(), self.colon, self.any_value()))


class SchemaCompiler:
    """Compiles one JSON schema (a dict) into grammar nodes, refusing what it cannot enforce."""

    def __init__(self, jg: JsonGrammar, root: dict[str, Any]) -> None:
        self.jg, self.g, self.root = jg, jg.g, root
        self._ref_stack: list[str] = []

    def compile(self, schema: Any, path: str = "#") -> int:
        if schema is True or schema == {}:
            return self.jg.any_value()
        if schema is False:
            raise ValueError(f"schema at {path} is `false`: no value can satisfy it")
        if not isinstance(schema, dict):
            raise ValueError(f"schema at {path} must be an object, got {type(schema).__name__}")
        if "$ref" in schema:
            return self._ref(schema, path)
        if "const" in schema:
            self._check_keys(schema, path, set())
            return self.jg.value_literal(schema["const"])
        if "enum" in schema:
            self._check_keys(schema, path, set())
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise ValueError(f"'enum' at {path} must be a non-empty list")
            return self.g.alt(*[self.jg.value_literal(v) for v in values])
        if "anyOf" in schema:
            return self._any_of(schema, path)
        types = schema.get("type")
        if types is None:
            extra = set(schema) - _ANNOTATIONS - {"$defs", "definitions"}
            if extra:
                raise ValueError(f"schema at {path} has {sorted(extra)} but no 'type': add a 'type'")
            return self.jg.any_value()
        type_list = types if isinstance(types, list) else [types]
        allowed: set[str] = set()
        for t in type_list:
            if t not in _BY_TYPE:
                raise ValueError(f"unsupported JSON-schema type {t!r} at {path}/type")
            allowed |= _BY_TYPE[t]
        self._check_keys(schema, path, allowed)
        return self.g.alt(*[getattr(self, f"_{t}")(schema, path) for t in type_list])

    # ------------------------------------------------------------ helpers
    def _check_keys(self, schema: dict, path: str, allowed: set[str]) -> None:
        for key in schema:
            if key not in _COMMON and key not in allowed:
                raise ValueError(f"unsupported JSON-schema keyword '{key}' at {path}/{key}")
        if "anyOf" in schema and len(set(schema) - _ANNOTATIONS - {"anyOf", "$defs", "definitions"}):
            raise ValueError(f"'anyOf' at {path} combined with sibling keywords is not supported")

    def _ref(self, schema: dict, path: str) -> int:
        ref = schema["$ref"]
        extra = set(schema) - _ANNOTATIONS - {"$ref", "$defs", "definitions"}
        if extra:
            raise ValueError(f"'$ref' at {path} with sibling keywords {sorted(extra)} is not supported")
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"only local '$ref' (#/...) is supported, got {ref!r} at {path}/$ref")
        if ref in self._ref_stack:
            raise ValueError(f"recursive '$ref' {ref!r} at {path}/$ref is not supported")
        target: Any = self.root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"'$ref' {ref!r} at {path}/$ref does not resolve")
            target = target[part]
        self._ref_stack.append(ref)
        try:
            return self.compile(target, ref)
        finally:
            self._ref_stack.pop()

    def _any_of(self, schema: dict, path: str) -> int:
        self._check_keys(schema, path, set())
        options = schema["anyOf"]
        if not isinstance(options, list) or not options:
            raise ValueError(f"'anyOf' at {path} must be a non-empty list")
        return self.g.alt(*[self.compile(o, f"{path}/anyOf/{i}") for i, o in enumerate(options)])

    @staticmethod
    def _count(schema: dict, key: str, path: str, default: int | None) -> int | None:
        value = schema.get(key, default)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ValueError(f"'{key}' at {path}/{key} must be a non-negative integer")
        return value

    # ------------------------------------------------------------ types
    def _string(self, schema: dict, path: str) -> int:
        lo = self._count(schema, "minLength", path, 0) or 0
        hi = self._count(schema, "maxLength", path, None)
        if hi is None:
            hi = max(self.jg.max_string_chars, lo)
        if hi < lo:
            raise ValueError(f"'maxLength' < 'minLength' at {path}")
        return self.jg.string(lo, hi)

    def _integer(self, schema: dict, path: str) -> int:
        minimum = schema.get("minimum")
        if minimum is None:
            return self.jg.integer
        if minimum == 0:
            return self.jg.natural
        if minimum == 1:
            return self.jg.positive
        raise ValueError(f"'minimum' {minimum!r} at {path}/minimum is not supported (only 0 or 1)")

    def _number(self, schema: dict, path: str) -> int:
        return self.jg.number

    def _boolean(self, schema: dict, path: str) -> int:
        return self.jg.boolean

    def _null(self, schema: dict, path: str) -> int:
        return self.jg.null

    def _array(self, schema: dict, path: str) -> int:
        if schema.get("uniqueItems", False) is not False:
            raise ValueError(f"unsupported JSON-schema keyword 'uniqueItems' (true) at {path}/uniqueItems")
        lo = self._count(schema, "minItems", path, 0) or 0
        hi = self._count(schema, "maxItems", path, None)
        if hi is not None and hi < lo:
            raise ValueError(f"'maxItems' < 'minItems' at {path}")
        items = schema.get("items", True)
        if isinstance(items, list):
            raise ValueError(f"tuple-style 'items' (a list) at {path}/items is not supported")
        return self.jg.array(self.compile(items, f"{path}/items"), lo, hi)

    def _object(self, schema: dict, path: str) -> int:
        g, jg = self.g, self.jg
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError(f"'properties' at {path}/properties must be an object")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise ValueError(f"'required' at {path}/required must be a list of strings")
        missing = [r for r in required if r not in props]
        if missing:
            raise ValueError(f"required properties {missing} at {path}/required are not declared in 'properties'")
        extra = schema.get("additionalProperties", True)
        if not props:
            if extra is False:
                return g.literal(b"{}")
            if extra is True:
                return jg.any_object()
            value = self.compile(extra, f"{path}/additionalProperties")
            return jg.members(g.seq(jg.string(), jg.colon, value))
        names = list(props)
        member = [
            g.seq(jg.value_literal(name), jg.colon, self.compile(props[name], f"{path}/properties/{name}"))
            for name in names
        ]
        memo: dict[tuple[int, bool], int] = {}

        def rest(i: int, first: bool) -> int:
            """Members ``i..`` in order, each optional one skippable; commas only between members."""
            key = (i, first)
            if key in memo:
                return memo[key]
            if i == len(names):
                node = g.seq()
            else:
                emit = g.seq(member[i], rest(i + 1, False)) if first else g.seq(
                    jg.comma, member[i], rest(i + 1, False))
                node = emit if names[i] in required else g.alt(emit, rest(i + 1, first))
            memo[key] = node
            return node

        return g.seq(g.chars(b"{"), rest(0, True), g.chars(b"}"))


def compile_json_schema(g: Grammar, schema: Any, max_string_chars: int = DEFAULT_MAX_STRING_CHARS) -> int:
    """Compile a JSON schema into ``g``; returns the root node. Raises ``ValueError`` on refusal."""
    jg = JsonGrammar(g, max_string_chars)
    return SchemaCompiler(jg, schema if isinstance(schema, dict) else {}).compile(schema)


def compile_json_object(g: Grammar, max_string_chars: int = DEFAULT_MAX_STRING_CHARS) -> int:
    """Any JSON object (the ``{"type": "json_object"}`` response format)."""
    return JsonGrammar(g, max_string_chars).any_object()
