"""Errors partners and pages can program against: one exception type, a stable code enum.

Raise `ApplicationError(ErrorCode.X, "human message", field="text")` from services; the API
exception handler and the chat views render it as JSON with the code's HTTP status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Stable error codes; the second value is the HTTP status they map to."""

    INVALID_JSON = "invalid_json"
    INVALID_ENCODING = "invalid_encoding"
    VALIDATION = "validation_error"
    MESSAGE_EMPTY = "message_empty"
    MESSAGE_TOO_LONG = "message_too_long"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    UNKNOWN_DOMAIN = "unknown_domain"
    NOT_FOUND = "not_found"
    PERMISSION_DENIED = "permission_denied"
    AUTHENTICATION_REQUIRED = "authentication_required"
    INVALID_API_KEY = "invalid_api_key"
    RATE_LIMITED = "rate_limit_exceeded"
    CONFLICT = "conflict"
    SAFETY_BLOCKED = "safety_blocked"
    ENGINE_UNAVAILABLE = "engine_unavailable"
    INTERNAL = "internal_error"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_ENCODING: 400,
    ErrorCode.VALIDATION: 400,
    ErrorCode.MESSAGE_EMPTY: 400,
    ErrorCode.MESSAGE_TOO_LONG: 413,
    ErrorCode.CONTEXT_LENGTH_EXCEEDED: 400,
    ErrorCode.UNKNOWN_DOMAIN: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.AUTHENTICATION_REQUIRED: 401,
    ErrorCode.INVALID_API_KEY: 401,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.CONFLICT: 409,
    ErrorCode.SAFETY_BLOCKED: 400,
    ErrorCode.ENGINE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}


class ApplicationError(Exception):
    """A failure the caller can act on: stable `code`, readable `message`, optional `field`/`data`."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        field: str | None = None,
        data: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.data = data or {}
        self.status = status or HTTP_STATUS.get(code, 400)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.field:
            body["field"] = self.field
        if self.data:
            body["data"] = self.data
        return body
