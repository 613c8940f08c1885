"""One place that turns ApplicationError into a response, for plain Django views and for DRF views."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse

from apps.core.errors import ApplicationError, ErrorCode
from apps.core.http import error_response


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """REST framework hook: ApplicationError keeps its code; DRF's own errors get the same body shape."""
    from rest_framework import exceptions as drf_exceptions
    from rest_framework.response import Response
    from rest_framework.views import exception_handler

    if isinstance(exc, ApplicationError):
        return Response({"error": exc.as_dict()}, status=exc.status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = {
        drf_exceptions.NotAuthenticated: ErrorCode.AUTHENTICATION_REQUIRED,
        drf_exceptions.AuthenticationFailed: ErrorCode.AUTHENTICATION_REQUIRED,
        drf_exceptions.PermissionDenied: ErrorCode.PERMISSION_DENIED,
        drf_exceptions.NotFound: ErrorCode.NOT_FOUND,
        drf_exceptions.ParseError: ErrorCode.INVALID_JSON,
        drf_exceptions.Throttled: ErrorCode.RATE_LIMITED,
    }.get(type(exc), ErrorCode.VALIDATION)
    detail = getattr(exc, "detail", str(exc))
    response.data = {"error": {"code": code.value, "message": str(detail)}}
    return response


def application_error_response(exc: ApplicationError) -> HttpResponse:
    return error_response(exc)
