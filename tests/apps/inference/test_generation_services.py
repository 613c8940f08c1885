"""apps.inference's sampling seam: request overrides validated up front, response_format forwarded to the
real engine, the engine's refusal mapped to a VALIDATION error naming the field, token counts memoised.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from apps.core.errors import ApplicationError, ErrorCode
from apps.inference import services as inference

SCHEMA = {"type": "object", "properties": {"rate": {"type": "integer"}, "kind": {"enum": ["APR", "APY"]}},
          "required": ["rate", "kind"], "additionalProperties": False}


def test_valid_overrides_are_kept_and_none_or_text_are_dropped():
    clean = inference.sampling_validate({"temperature": 0.2, "top_p": 0.9, "max_tokens": 5, "stop": "END",
                                         "seed": 7, "response_format": {"type": "text"}, "top_k": None})
    assert clean == {"temperature": 0.2, "top_p": 0.9, "max_tokens": 5, "stop": ["END"], "seed": 7}
    schema_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}
    assert inference.sampling_validate({"response_format": schema_format}) == {"response_format": schema_format}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"temperature": 2.5}, "temperature"), ({"temperature": True}, "temperature"), ({"top_p": 0}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"), ({"seed": "7"}, "seed"), ({"stop": ["a", ""]}, "stop"),
    ({"stop": ["a"] * 5}, "stop"), ({"logit_bias": {}}, "logit_bias"),
    ({"response_format": {"type": "yaml"}}, "response_format"), ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "object",
                                                                            "patternProperties": {}}}}},
     "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"schema": {"$ref": "http://x"}}}},
     "response_format"),
])
def test_bad_overrides_name_their_field(overrides, field):
    with pytest.raises(ApplicationError) as info:
        inference.sampling_validate(overrides)
    assert info.value.code == ErrorCode.VALIDATION and info.value.field == field


def _run(**kwargs) -> tuple[str, str]:
    text, finish = "", None
    for chunk in inference.generation_stream(**kwargs):
        if chunk.kind == "answer":
            text += chunk.text
        elif chunk.kind == "finish":
            finish = chunk.finish_reason
    return text, finish


def test_response_format_reaches_the_real_engine(real_model):
    messages = [{"role": "user", "content": "Give the interest rate as JSON."}]
    text, finish = _run(messages=messages, max_tokens=24, sampling={
        "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA}}})
    jsonschema.validate(json.loads(text), SCHEMA)
    assert finish == "stop"


def test_an_engine_refusal_is_a_validation_error_on_response_format(real_model, monkeypatch):
    engine = inference.engine_get("r1")

    def refuse(prompt, params, **kwargs):
        raise ValueError("the vocabulary cannot spell this format")

    monkeypatch.setattr(engine, "stream", refuse)
    with pytest.raises(ApplicationError) as info:
        _run(messages=[{"role": "user", "content": "hi"}], max_tokens=4,
             sampling={"response_format": {"type": "json_object"}})
    assert info.value.code == ErrorCode.VALIDATION and info.value.field == "response_format"


def test_token_counts_are_memoised_and_equal_to_a_fresh_render(real_model):
    messages = [{"role": "system", "content": "You explain finance."}, {"role": "user", "content": "APR?"}]
    engine = inference.engine_get("r1")
    expected = len(engine.render_chat(messages, add_generation_prompt=True))
    assert inference.chat_token_count(messages) == expected
    assert inference.chat_token_count([dict(m) for m in messages]) == expected  # a hit, same answer
    longer = [*messages, {"role": "assistant", "content": "Annual rate."}, {"role": "user", "content": "APY?"}]
    assert inference.chat_token_count(longer) == len(engine.render_chat(longer, add_generation_prompt=True))
