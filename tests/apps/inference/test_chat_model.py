"""The LangChain chat model over the in-process engine: invoke, stream, LCEL, usage, reasoning.

The Zero profile (the untouched bundled SmolLM2, which answers without reasoning) answers the
invoke/stream/chain tests, whose few-token budgets check text, usage and stops. R1 serves the bundled
base plus the r1-domain adapter, which spends its first tokens on reasoning; the reasoning mapping is
checked against the conftest's stand-in engine, which streams a reasoning part then an answer exactly
as generation_stream does.
"""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.prompts import ChatPromptTemplate

from apps.core.errors import ApplicationError
from apps.inference.chat_model import VerityChatModel, messages_to_chat


def test_invoke_with_the_real_model_returns_text_usage_and_finish_reason(real_model):
    model = VerityChatModel(profile="zero", temperature=0, max_tokens=8)
    message = model.invoke([SystemMessage("Answer briefly."), HumanMessage("What is a bond?")])
    assert isinstance(message, AIMessage) and message.content.strip()
    usage = message.usage_metadata
    assert 1 <= usage["output_tokens"] <= 8 and usage["input_tokens"] > 5
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    # Deterministic: greedy decoding twice gives the same text, and the stream spells the same text.
    assert model.invoke([SystemMessage("Answer briefly."), HumanMessage("What is a bond?")]).content == message.content
    chunks = list(model.stream([SystemMessage("Answer briefly."), HumanMessage("What is a bond?")]))
    assert all(isinstance(c, AIMessageChunk) for c in chunks) and len(chunks) >= 3
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == message.content
    assert total.usage_metadata["output_tokens"] == usage["output_tokens"]


def test_max_tokens_and_stop_are_applied(real_model):
    model = VerityChatModel(profile="zero", temperature=0, max_tokens=4)
    message = model.invoke("Count from one to ten.")
    assert message.usage_metadata["output_tokens"] <= 4
    free = VerityChatModel(profile="zero", temperature=0, max_tokens=16).invoke("Count from one to ten.").content
    stop = free.strip()[4:7]
    stopped = VerityChatModel(profile="zero", temperature=0, max_tokens=16).invoke("Count from one to ten.", stop=[stop])
    assert stop not in stopped.content and free.startswith(stopped.content)


def test_an_lcel_chain_prompt_then_model(real_model):
    prompt = ChatPromptTemplate.from_messages([("system", "You explain {topic} terms."), ("human", "{question}")])
    chain = prompt | VerityChatModel(profile="zero", temperature=0, max_tokens=6)
    message = chain.invoke({"topic": "finance", "question": "What is APR?"})
    assert isinstance(message, AIMessage) and message.content.strip()
    streamed = "".join(chunk.content for chunk in chain.stream({"topic": "finance", "question": "What is APR?"}))
    assert streamed == message.content


def test_reasoning_goes_to_additional_kwargs_and_is_not_fed_back(fake_engine):
    model = VerityChatModel(max_tokens=64)
    history = [HumanMessage("Define APR."),
               AIMessage("APR is the annual rate.", additional_kwargs={"reasoning_content": "SECRET"}),
               HumanMessage("And compound interest?")]
    message = model.invoke(history)
    assert message.additional_kwargs["reasoning_content"].startswith("The user asks about interest")
    assert message.content.startswith("Compound interest is interest earned")
    assert not any("SECRET" in m["content"] for m in fake_engine.prompts[-1])
    reasoning = "".join(c.additional_kwargs.get("reasoning_content", "") for c in model.stream(history))
    assert reasoning == message.additional_kwargs["reasoning_content"]


def test_bad_sampling_and_message_types_are_refused():
    with pytest.raises(ApplicationError) as bad:
        VerityChatModel(temperature=5).invoke("hi")
    assert bad.value.field == "temperature"
    from langchain_core.messages import ToolMessage

    with pytest.raises(ApplicationError):
        messages_to_chat([ToolMessage("x", tool_call_id="1")])
