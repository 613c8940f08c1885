"""The OpenAPI 3.1 contract of /v1, written by hand next to the serializers it describes.

`tests/apps/partner_api/test_openapi.py` keeps it honest: every documented route exists, responses are
validated against it, and schemathesis fuzzes it (no 5xx, bodies and headers conform).
"""

from __future__ import annotations

from typing import Any


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


_RATE_HEADERS = {name: {"schema": {"type": "string"}} for name in (
    "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")}


def _error(description: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description,
                                "content": {"application/json": {"schema": _ref("Error")}}}
    if headers:
        response["headers"] = headers
    return response


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "headers": _RATE_HEADERS, "content": {"application/json": {"schema": schema}}}


_COMMON_ERRORS = {
    "400": _error("Invalid request (code names the problem; param names the field)"),
    "401": _error("Missing, malformed, unknown, revoked or expired API key (code invalid_api_key)"),
    "403": _error("The key's scopes do not include this endpoint (code scope_denied)"),
    "405": _error("Method not allowed"),
    "415": _error("The body is not application/json"),
    "429": _error("Rate limit reached (code rate_limit_exceeded)", **{
        "Retry-After": {"schema": {"type": "string"}, "description": "seconds"}, **_RATE_HEADERS}),
}


def _op(op_id: str, summary: str, responses: dict[str, Any], *, body: str | None = None,
        params: list[dict[str, Any]] | None = None, not_found: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": {**responses,
                                                                                          **_COMMON_ERRORS}}
    if not_found:
        operation["responses"]["404"] = _error("No such object for this key (other tenants' ids too)")
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        operation["parameters"] = params
    return operation


_CONVERSATION_ID = {"name": "conversation_id", "in": "path", "required": True, "schema": {"type": "string"}}
_IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "Retrying with the same key returns the first request's result, no new generation."}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type", "code", "param"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "code": _nullable("string"), "param": _nullable("string")}}}},
    "Model": {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": {"type": "string", "examples": ["finance", "finance-r1", "finance-zero"]},
        "object": {"const": "model"}, "created": {"type": "integer"}, "owned_by": {"type": "string"},
        "domain": {"type": "string"}, "profile": {"enum": ["r1", "zero"]}, "title": {"type": "string"},
        "description": {"type": "string"}}},
    "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
    "ChatMessage": {"type": "object", "required": ["role"], "properties": {
        "role": {"type": "string", "description": "system, developer, user or assistant"},
        "content": {"type": ["string", "array", "null"], "items": {"type": "object", "properties": {
            "type": {"const": "text"}, "text": {"type": "string"}}}},
        "reasoning_content": {"type": ["string", "null"], "description": "accepted and dropped (R1 rule)"}}},
    "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "properties": {
        "model": {"type": "string", "maxLength": 64},
        "messages": {"type": "array", "minItems": 1, "maxItems": 500, "items": _ref("ChatMessage")},
        "stream": _nullable("boolean"), "stream_options": {"type": ["object", "null"]},
        "temperature": _nullable("number", minimum=0, maximum=2), "top_p": _nullable("number", minimum=0, maximum=1),
        "max_tokens": _nullable("integer", minimum=1, maximum=32768),
        "max_completion_tokens": _nullable("integer", minimum=1, maximum=32768),
        "stop": {"oneOf": [{"type": "string"}, {"type": "array", "maxItems": 4, "items": {"type": "string"}},
                           {"type": "null"}]},
        "seed": _nullable("integer"), "n": _nullable("integer", minimum=1, maximum=1),
        "user": {"type": "string", "maxLength": 256},
        "response_format": {"type": ["object", "null"], "description": "type 'text', 'json_object' or 'json_schema' "
                            "({'json_schema': {'name', 'schema'}}); a schema the engine cannot enforce is a 400 "
                            "with param 'response_format'"},
        "logprobs": _nullable("boolean"), "tools": {"type": ["array", "null"], "maxItems": 0},
        "conversation": {"type": ["string", "null"], "format": "uuid",
                         "description": "Verity extension: continue a stored conversation"}}},
    "Usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"], "properties": {
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"}}},
    "VerityTurn": {"type": "object", "description": "Verity's safety verdicts and record ids for the turn",
                   "properties": {"conversation_id": {"type": "string"}, "message_id": {"type": "string"},
                                  "input_action": {"type": "string"}, "verdicts": {"type": "array"},
                                  "disclaimer": _nullable("string"), "pack_version": {"type": "integer"}}},
    "ChatCompletion": {"type": "object", "required": ["id", "object", "created", "model", "choices", "usage"],
                       "properties": {
        "id": {"type": "string"}, "object": {"const": "chat.completion"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "system_fingerprint": _nullable("string"),
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message", "finish_reason"],
                                               "properties": {
            "index": {"type": "integer"}, "logprobs": {"type": "null"},
            "finish_reason": {"enum": ["stop", "length", "content_filter"]},
            "message": {"type": "object", "required": ["role", "content"], "properties": {
                "role": {"const": "assistant"}, "content": _nullable("string"),
                "reasoning_content": _nullable("string"), "refusal": _nullable("string")}}}}},
        "usage": _ref("Usage"), "verity": _ref("VerityTurn")}},
    "Conversation": {"type": "object", "required": ["id", "object", "created", "model", "domain", "title"],
                     "properties": {
        "id": {"type": "string"}, "object": {"const": "conversation"}, "created": {"type": "integer"},
        "model": {"type": "string"}, "domain": {"type": "string"}, "title": {"type": "string"},
        "pack_version": {"type": "integer"}}},
    "ConversationCreate": {"type": "object", "required": ["model"], "properties": {
        "model": {"type": "string", "maxLength": 64}, "title": {"type": "string", "maxLength": 200},
        "metadata": {"type": "object"}}},
    "ConversationList": {"type": "object", "required": ["object", "data", "has_more", "next_cursor"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Conversation")},
        "has_more": {"type": "boolean"}, "next_cursor": _nullable("string")}},
    "Message": {"type": "object", "required": ["id", "object", "role", "created", "status", "content"],
                "properties": {
        "id": {"type": "string"}, "object": {"const": "conversation.message"}, "role": {"enum": ["user", "assistant"]},
        "created": {"type": "integer"}, "status": {"type": "string"}, "content": {"type": "string"},
        "reasoning_content": _nullable("string"), "disclaimer": _nullable("string"),
        "finish_reason": _nullable("string")}},
    "MessageList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Message")}}},
    "ConversationDeleted": {"type": "object", "required": ["id", "object", "deleted"], "properties": {
        "id": {"type": "string"}, "object": {"const": "conversation.deleted"}, "deleted": {"const": True}}},
    "FeedbackCreate": {"type": "object", "required": ["message_id", "rating"], "properties": {
        "message_id": {"type": "string", "maxLength": 64}, "rating": {"enum": [1, -1]},
        "comment": {"type": "string", "maxLength": 4000}}},
    "Feedback": {"type": "object", "required": ["id", "object", "message_id", "rating"], "properties": {
        "id": {"type": "string"}, "object": {"const": "feedback"}, "message_id": {"type": "string"},
        "rating": {"type": "integer"}, "comment": {"type": "string"}}},
    "EscalationCreate": {"type": "object", "required": ["reason"], "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 4000}}},
    "Escalation": {"type": "object", "required": ["id", "object", "status", "conversation_id"], "properties": {
        "id": {"type": "string"}, "object": {"const": "escalation"}, "status": {"type": "string"},
        "conversation_id": {"type": "string"}, "reason": {"type": "string"}}},
}

_SSE = {"schema": {"type": "string", "description": "`data: <chat.completion.chunk JSON>` frames, then "
                                                     "`data: [DONE]`"}}

_PATHS: dict[str, Any] = {
    "/v1/models": {"get": _op("listModels", "Models this key may use: <domain>, <domain>-r1, <domain>-zero",
                              {"200": _json(_ref("ModelList"))})},
    "/v1/models/{model_id}": {"get": _op("getModel", "One model", {"200": _json(_ref("Model"))}, not_found=True,
                                         params=[{"name": "model_id", "in": "path", "required": True,
                                                  "schema": {"type": "string"}}])},
    "/v1/chat/completions": {"post": _op(
        "createChatCompletion", "OpenAI-compatible chat completion (reasoning in reasoning_content)",
        {"200": {"description": "A completion, or an SSE stream when stream=true", "headers": _RATE_HEADERS,
                 "content": {"application/json": {"schema": _ref("ChatCompletion")}, "text/event-stream": _SSE}},
         "409": _error("The first request with this Idempotency-Key is still running"),
         "413": _error("Message too long"),
         "503": _error("Engine unavailable"), "504": _error("The reply did not finish in time")},
        body="ChatCompletionRequest", params=[_IDEMPOTENCY], not_found=True)},
    "/v1/conversations": {
        "get": _op("listConversations", "This partner app's conversations, newest first (cursor pages)",
                   {"200": _json(_ref("ConversationList"))}, params=[
                       {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                       {"name": "after", "in": "query", "schema": {"type": "string", "maxLength": 200}}]),
        "post": _op("createConversation", "Start a conversation (send turns with chat.completions + conversation)",
                    {"201": _json(_ref("Conversation"), "Created")}, body="ConversationCreate", not_found=True),
    },
    "/v1/conversations/{conversation_id}": {
        "get": _op("getConversation", "One conversation", {"200": _json(_ref("Conversation"))},
                   params=[_CONVERSATION_ID], not_found=True),
        "delete": _op("deleteConversation", "Delete the partner's copy (the regulated record is retained)",
                      {"200": _json(_ref("ConversationDeleted"))}, params=[_CONVERSATION_ID], not_found=True),
    },
    "/v1/conversations/{conversation_id}/messages": {"get": _op(
        "listMessages", "A conversation's messages, oldest first", {"200": _json(_ref("MessageList"))},
        params=[_CONVERSATION_ID], not_found=True)},
    "/v1/conversations/{conversation_id}/feedback": {"post": _op(
        "createFeedback", "Rate an assistant message", {"201": _json(_ref("Feedback"), "Created")},
        body="FeedbackCreate", params=[_CONVERSATION_ID], not_found=True)},
    "/v1/conversations/{conversation_id}/escalations": {"post": _op(
        "createEscalation", "Ask for human review of a conversation", {"201": _json(_ref("Escalation"), "Created")},
        body="EscalationCreate", params=[_CONVERSATION_ID], not_found=True)},
}


def openapi_document(*, server_url: str = "/") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Verity partner API", "version": "1.0.0",
                 "description": "OpenAI-compatible chat completions over Verity's safety pipeline and audit chain, "
                                "plus conversations, feedback and escalations. Authenticate with "
                                "`Authorization: Bearer vk_<prefix>_<secret>`."},
        "servers": [{"url": server_url}],
        "security": [{"bearerAuth": []}],
        "paths": _PATHS,
        "components": {"schemas": _SCHEMAS, "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
    }
