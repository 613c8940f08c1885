"""Kernel views: the health endpoint and JSON-aware error handlers."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from apps.core.errors import ErrorCode
from apps.core.health import health_report
from apps.core.http import error_json

_JSON_PREFIXES = ("/chat/api/", "/v1/", "/healthz")


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """`{"status", "mode", "database", "broker", "model"}`; 503 when any part is unreachable."""
    report = health_report()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(_JSON_PREFIXES) or "application/json" in request.headers.get("Accept", "")


def error_400(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_json(ErrorCode.VALIDATION, "Bad request.", status=400)
    return defaults.bad_request(request, exception, template_name="errors/400.html")


def error_403(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_json(ErrorCode.PERMISSION_DENIED, "Permission denied.")
    return defaults.permission_denied(request, exception, template_name="errors/403.html")


def error_404(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if _wants_json(request):
        return error_json(ErrorCode.NOT_FOUND, "Not found.")
    return defaults.page_not_found(request, exception, template_name="errors/404.html")


def error_500(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return error_json(ErrorCode.INTERNAL, "Internal error; the incident was logged.")
    return defaults.server_error(request, template_name="errors/500.html")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF rejections on the JSON API get the JSON error body, not Django's HTML page."""
    if _wants_json(request):
        return error_json(
            ErrorCode.PERMISSION_DENIED,
            f"CSRF verification failed ({reason}). Send the csrftoken cookie's value in X-CSRFToken.",
            status=403,
        )
    from django.views.csrf import csrf_failure as django_csrf_failure

    return django_csrf_failure(request, reason, template_name="errors/403_csrf.html")
