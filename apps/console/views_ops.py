"""Console home, dashboards (SVG charts drawn by static/console/console.js) and Prometheus `/metrics`."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.console.metrics import metrics_text
from apps.console.roles import console_access, console_view
from apps.console.stats import daily_series, domain_stats
from apps.core.errors import ApplicationError, ErrorCode


@console_view("view_console")
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "console/home.html", {"access": console_access(request)})


@console_view("view_dashboard")
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    tenant = console_access(request).tenant
    rows = domain_stats(tenant=tenant)
    chart = {
        "daily": daily_series(tenant=tenant),
        "rates": [{"domain": r["domain"], "block": r["block_rate"], "escalation": r["escalation_rate"],
                   "retraction": r["retraction_rate"]} for r in rows],
        "latency": [{"domain": r["domain"], "p50": r["latency_p50_s"], "p95": r["latency_p95_s"]} for r in rows],
    }
    return render(request, "console/dashboard.html", {"rows": rows, "chart": chart})


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. A scraper sends `Authorization: Bearer $VERITY_METRICS_TOKEN`; a signed-in
    console admin may read it too. Without a configured token only admins can."""
    token = str(getattr(settings, "VERITY_METRICS_TOKEN", "") or "")
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not (token and sent and hmac.compare_digest(token, sent)):
        if not request.user.is_authenticated:
            raise ApplicationError(ErrorCode.AUTHENTICATION_REQUIRED, "Send the metrics token or sign in.")
        console_access(request).require("view_dashboard")
    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")
