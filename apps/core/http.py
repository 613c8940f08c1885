"""Request parsing and error rendering for the JSON endpoints of the chat front door.

Anything a browser or partner sends is checked here with a real exception: a body that is not UTF-8,
not JSON, not an object, or too large gets a 4xx ApplicationError before any service runs.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse

from apps.core.errors import ApplicationError, ErrorCode

# Hard ceiling on a JSON body, independent of the per-message character limit the services check:
# large enough for any legal message, small enough that a 1 MB paste is refused before parsing.
MAX_JSON_BODY_BYTES = 256 * 1024


def json_body(request: HttpRequest, *, max_bytes: int = MAX_JSON_BODY_BYTES) -> dict[str, Any]:
    """Decode the request body as a UTF-8 JSON object or raise ApplicationError (4xx)."""
    raw = request.body
    if len(raw) > max_bytes:
        raise ApplicationError(
            ErrorCode.MESSAGE_TOO_LONG,
            f"Request body is {len(raw)} bytes; the limit is {max_bytes} bytes.",
            data={"limit_bytes": max_bytes},
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApplicationError(
            ErrorCode.INVALID_ENCODING, f"Request body is not valid UTF-8 (byte {exc.start})."
        ) from None
    if not text.strip():
        raise ApplicationError(ErrorCode.INVALID_JSON, "Request body is empty; a JSON object was expected.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApplicationError(
            ErrorCode.INVALID_JSON, f"Request body is not valid JSON: {exc.msg} at line {exc.lineno}."
        ) from None
    if not isinstance(data, dict):
        raise ApplicationError(ErrorCode.INVALID_JSON, "Request body must be a JSON object.")
    return data


def str_field(data: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """Fetch a string field from a parsed body, with an error that names the field."""
    value = data.get(name)
    if value is None:
        if required:
            raise ApplicationError(ErrorCode.VALIDATION, f"Field '{name}' is required.", field=name)
        return None
    if not isinstance(value, str):
        raise ApplicationError(ErrorCode.VALIDATION, f"Field '{name}' must be a string.", field=name)
    return value


def error_response(error: ApplicationError) -> JsonResponse:
    """The chat API's error body: {"error": {"code", "message", "field"?}}."""
    return JsonResponse({"error": error.as_dict()}, status=error.status)


def error_json(code: ErrorCode, message: str, *, status: int | None = None) -> JsonResponse:
    return error_response(ApplicationError(code, message, status=status))
