"""Closing a constrained value within the token budget (model_core/constrained_budget.py).

With ``max_tokens`` given to the constraint, random logits (which on their own wander into long
strings, big numbers and extra keys) must still produce a value that parses, validates and is
followed by EOS within the budget, down to the tightest possible budget: the value's minimal length
in bytes plus one token for EOS. The closing distance itself is checked on values whose shortest
completion is known.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import torch

from model_core.constrained import constraint_from_response_format, regex_constraint
from model_core.constrained_budget import node_min_lengths
from tests.model_core.test_constrained import EOS, SCHEMAS, VOCAB, json_schema_format


def run(schema: dict, budget: int, seed: int) -> tuple[str, list[int]]:
    c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS], max_tokens=budget)
    gen = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    while len(ids) < budget and (not ids or ids[-1] != EOS):
        ids.append(int(c.processor(ids, 3 * torch.randn(len(VOCAB), generator=gen)).argmax()))
    return c.text(), ids


def minimal_length(schema: dict) -> int:
    c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS], max_tokens=1)
    return c._m.guard.distance(c.state)


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
@pytest.mark.parametrize("slack", [1, 3, 12])
def test_value_closes_in_time_for_every_budget_it_can_fit(index: int, slack: int) -> None:
    schema = SCHEMAS[index]
    budget = minimal_length(schema) + slack  # slack 1: exactly the shortest value, then EOS
    for seed in range(4):
        text, ids = run(schema, budget, seed)
        assert len(ids) <= budget and ids[-1] == EOS, (budget, text)
        jsonschema.validate(json.loads(text), schema)


def test_without_a_budget_random_logits_run_past_it() -> None:
    """The guard is what makes the difference: the same walk unguarded does not close in 20 tokens."""
    schema = {"type": "object", "additionalProperties": {"type": "string", "maxLength": 50}}
    unfinished = 0
    for seed in range(4):
        c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS])
        gen = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        while len(ids) < 20 and (not ids or ids[-1] != EOS):
            ids.append(int(c.processor(ids, 3 * torch.randn(len(VOCAB), generator=gen)).argmax()))
        unfinished += ids[-1] != EOS
        text, guarded = run(schema, 20, seed)
        assert guarded[-1] == EOS
        jsonschema.validate(json.loads(text), schema)
    assert unfinished >= 2


@pytest.mark.parametrize(("schema", "shortest"), [
    ({"type": "boolean"}, "true"),
    ({"enum": ["approve", "reject"]}, '"reject"'),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, "[0,0]"),
    ({"type": "string", "minLength": 3}, '"aaa"'),
    ({"type": "object", "properties": {"a": {"type": "null"}, "b": {"type": "string"}}, "required": ["a"],
      "additionalProperties": False}, '{"a":null}'),
])
def test_closing_distance_is_the_shortest_valid_value(schema: dict, shortest: str) -> None:
    assert minimal_length(schema) == len(shortest)


def test_distance_falls_as_the_value_is_written() -> None:
    c = constraint_from_response_format(json_schema_format({"type": "string", "minLength": 3}), VOCAB, [EOS],
                                        max_tokens=50)
    guard = c._m.guard
    seen = [guard.distance(c.state)]
    for ch in '"ab':
        c.advance(VOCAB.index(ch.encode()))
        seen.append(guard.distance(c.state))
    assert seen == [5, 4, 3, 2]  # '"aaa"' -> 'aa"' -> 'a"' ... still owed
    c.advance(VOCAB.index(b"c"))
    assert guard.distance(c.state) == 1  # only the closing quote


def test_regex_budget_closes_too() -> None:
    c = regex_constraint(r"[a-z]{2,40}", VOCAB, [EOS], max_tokens=4)
    gen = torch.Generator().manual_seed(0)
    ids: list[int] = []
    while len(ids) < 4 and (not ids or ids[-1] != EOS):
        ids.append(int(c.processor(ids, torch.randn(len(VOCAB), generator=gen)).argmax()))
    assert ids[-1] == EOS and re.fullmatch(r"[a-z]{2,40}", c.text()), c.text()


def test_node_min_lengths_handles_recursive_grammars() -> None:
    c = constraint_from_response_format({"type": "json_object"}, VOCAB, [EOS], max_tokens=10)
    lengths = node_min_lengths(c._m.grammar)
    assert c._m.guard.distance(c.state) == 2  # "{}"
    assert all(v >= 0 for v in lengths)
