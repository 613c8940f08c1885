"""A LangChain chat model over Verity's in-process engine, for in-house chains (evaluations, tooling).

    from apps.inference.chat_model import VerityChatModel
    model = VerityChatModel(profile="r1", temperature=0.6, max_tokens=256)
    model.invoke("What is compound interest?")            # AIMessage
    for chunk in model.stream("..."): ...                  # AIMessageChunk deltas
    (prompt | model).invoke({...})                         # LCEL

It is a `langchain_core` `BaseChatModel` that calls `apps.inference.services.generation_stream` in this
process (the engine is loaded once per process, as everywhere else): no HTTP, no broker. R1 reasoning
arrives in `additional_kwargs["reasoning_content"]` (as the DeepSeek integrations do); usage in
`usage_metadata`; the finish reason in `response_metadata["finish_reason"]`. Reasoning in earlier
AIMessages is never sent back to the model (R1 rule).

This is the raw engine, below the conversation core: no safety pipeline, no audit record. Anything
that reaches a customer or a partner goes through `apps.conversations` (the chat and /v1 doors).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from apps.core.errors import ApplicationError, ErrorCode
from apps.inference import services

ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant", "system": "system",
         "developer": "system"}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    # LangChain content blocks: keep the text ones.
    return "".join(part if isinstance(part, str) else str(part.get("text", "")) for part in content or []
                   if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text"))


def messages_to_chat(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as the engine's `{"role", "content"}` list; reasoning is dropped."""
    chat = []
    for message in messages:
        role = ROLES.get(message.type)
        if role is None:
            raise ApplicationError(ErrorCode.VALIDATION, f"Unsupported message type {message.type!r} "
                                   "(system, human and ai messages only).", field="messages")
        chat.append({"role": role, "content": _text(message.content)})
    return chat


class VerityChatModel(BaseChatModel):
    """Chat model backed by the in-process model_core engine (see the module docstring)."""

    profile: str = "r1"
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int = 256
    seed: int | None = None
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = None

    @property
    def _llm_type(self) -> str:
        return "verity-model-core"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"profile": self.profile, "temperature": self.temperature, "top_p": self.top_p,
                "max_tokens": self.max_tokens, "seed": self.seed}

    def _sampling(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[dict[str, Any], int]:
        overrides = {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed,
                     "stop": [*(self.stop or []), *(stop or [])] or None,
                     "response_format": self.response_format}
        overrides.update({k: v for k, v in kwargs.items() if k in services.SAMPLING_KEYS})
        max_tokens = int(overrides.pop("max_tokens", None) or self.max_tokens)
        return services.sampling_validate(overrides), max_tokens

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        sampling, max_tokens = self._sampling(stop, kwargs)
        model_name = services.engine_version(self.profile)
        for piece in services.generation_stream(messages=messages_to_chat(messages), sampling=sampling,
                                                max_tokens=max_tokens, profile=self.profile):
            if piece.kind == "finish":
                usage = piece.usage or {}
                message = AIMessageChunk(
                    content="", chunk_position="last",
                    usage_metadata=UsageMetadata(input_tokens=int(usage.get("prompt_tokens", 0)),
                                                 output_tokens=int(usage.get("completion_tokens", 0)),
                                                 total_tokens=int(usage.get("total_tokens", 0))),
                    response_metadata={"finish_reason": piece.finish_reason or "stop", "model_name": model_name})
                yield ChatGenerationChunk(message=message)
                continue
            if piece.kind == "reasoning":
                chunk = ChatGenerationChunk(message=AIMessageChunk(
                    content="", additional_kwargs={"reasoning_content": piece.text}))
            else:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece.text))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece.text, chunk=chunk)
            yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        content, reasoning = [], []
        usage: UsageMetadata | None = None
        metadata: dict[str, Any] = {}
        for chunk in self._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            message = chunk.message
            content.append(_text(message.content))
            reasoning.append(message.additional_kwargs.get("reasoning_content", ""))
            if message.usage_metadata:
                usage, metadata = message.usage_metadata, dict(message.response_metadata)
        extra = {"reasoning_content": "".join(reasoning)} if any(reasoning) else {}
        message = AIMessage(content="".join(content), additional_kwargs=extra, usage_metadata=usage,
                            response_metadata=metadata)
        return ChatResult(generations=[ChatGeneration(message=message,
                                                      generation_info={"finish_reason": metadata.get("finish_reason")})],
                          llm_output={"model_name": metadata.get("model_name"), "token_usage": dict(usage or {})})
