"""OpenAI-style errors for /v1: `{"error": {"message", "type", "code", "param"}}` with stable codes.

Partners' SDKs switch on the HTTP status (the `openai` package raises AuthenticationError for 401,
RateLimitError for 429, BadRequestError for 400, NotFoundError for 404) and programs switch on `code`.
`PartnerApiError` is raised by this app; an `ApplicationError` from the layers below is translated here,
and DRF's own exceptions (parse errors, 405, 415) get the same body, so no /v1 response has another shape.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import JsonResponse

from apps.core.errors import ApplicationError, ErrorCode

logger = logging.getLogger(__name__)

ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}


class PartnerApiError(Exception):
    """An error rendered verbatim as an OpenAI-style body; `headers` travel with it (Retry-After...)."""

    def __init__(self, status: int, code: str, message: str, *, param: str | None = None,
                 headers: dict[str, str] | None = None, error_type: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers = headers or {}
        self.error_type = error_type or ERROR_TYPES.get(status, "invalid_request_error")
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.error_type, "code": self.code, "param": self.param}
        error.update(self.extra)
        return {"error": error}


def invalid(message: str, *, param: str | None = None, code: str = "invalid_request_error") -> PartnerApiError:
    return PartnerApiError(400, code, message, param=param)


def not_found(what: str = "object") -> PartnerApiError:
    return PartnerApiError(404, "not_found", f"No such {what}.")


def from_application_error(exc: ApplicationError) -> PartnerApiError:
    """Translate the core's error codes; the HTTP status stays the one the core chose."""
    code = exc.code.value
    if exc.code == ErrorCode.UNKNOWN_DOMAIN:
        return PartnerApiError(404, "model_not_found", exc.message, param="model")
    if exc.code == ErrorCode.VALIDATION:
        code = "invalid_request_error"
    return PartnerApiError(exc.status, code, exc.message, param=exc.field)


def to_partner_error(exc: Exception) -> PartnerApiError | None:
    """Any exception a /v1 view may raise, as a PartnerApiError (None: let it become a 500)."""
    from rest_framework import exceptions as drf

    if isinstance(exc, PartnerApiError):
        return exc
    if isinstance(exc, ApplicationError):
        return from_application_error(exc)
    if isinstance(exc, drf.ParseError):
        return PartnerApiError(400, "invalid_json", f"Request body is not valid JSON: {exc.detail}")
    if isinstance(exc, drf.UnsupportedMediaType):
        return PartnerApiError(415, "unsupported_media_type", "Send the request body as application/json.")
    if isinstance(exc, drf.MethodNotAllowed):
        return PartnerApiError(405, "method_not_allowed", str(exc.detail))
    if isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        return missing_key()
    if isinstance(exc, drf.NotFound):
        return not_found()
    if isinstance(exc, drf.ValidationError):
        return validation_error(exc.detail)
    if isinstance(exc, drf.APIException):
        return PartnerApiError(exc.status_code, str(exc.default_code), str(exc.detail))
    return None


def missing_key() -> PartnerApiError:
    return PartnerApiError(
        401, "invalid_api_key",
        "You didn't provide an API key. Send it as `Authorization: Bearer vk_...`.",
        headers={"WWW-Authenticate": 'Bearer realm="verity"'},
    )


def validation_error(detail: Any) -> PartnerApiError:
    """DRF's nested `{field: [messages]}` becomes one message naming the first offending field."""
    param, message = _first_error(detail, "")
    return PartnerApiError(400, "invalid_request_error", message, param=param or None)


def _first_error(detail: Any, path: str) -> tuple[str, str]:
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = path if key == "non_field_errors" else (f"{path}.{key}" if path else str(key))
            return _first_error(value, name)
    if isinstance(detail, list):
        for index, value in enumerate(detail):
            if value:
                nested = isinstance(value, dict | list)
                return _first_error(value, f"{path}[{index}]" if nested else path)
    text = str(detail)
    return path, (f"Invalid value for '{path}': {text}" if path else text)


def error_json(error: PartnerApiError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers.items():
        response[name] = value
    return response


def exception_handler(exc: Exception, context: dict[str, Any]) -> JsonResponse | None:
    """DRF hook for every /v1 view: every error leaves as an OpenAI-style body."""
    error = to_partner_error(exc)
    if error is None:
        logger.exception("unhandled error in partner API view", exc_info=exc)
        error = PartnerApiError(500, "internal_error", "The server had an error processing your request.")
    return error_json(error)
