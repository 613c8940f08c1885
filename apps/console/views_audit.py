"""Console pages for the audit chain: search, one record (content for allowed roles), verify, export."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST

from apps.audit.events import AUDIT_EVENTS
from apps.console import audit_services as svc
from apps.console.roles import console_access, console_view


def _filters(request: HttpRequest) -> dict[str, str]:
    return {key: request.GET.get(key, "").strip()[:128] for key in ("q", "event", "actor")}


@console_view("view_audit")
@require_GET
def audit_page(request: HttpRequest) -> HttpResponse:
    filters = _filters(request)
    records = svc.audit_records(tenant=console_access(request).tenant, **filters)
    return render(request, "console/audit_list.html", {
        "records": records[: svc.PAGE_SIZE], "filters": filters, "events": sorted(AUDIT_EVENTS),
        "total": records.count(), "access": console_access(request),
    })


@console_view("view_audit")
@require_GET
def record_page(request: HttpRequest, seq: int) -> HttpResponse:
    access = console_access(request)
    record = svc.audit_record_get(tenant=access.tenant, seq=seq)
    opened = svc.audit_record_open(record=record, actor=request.user, tenant=access.tenant,
                                   with_content=access.has("view_audit_content"))
    return render(request, "console/audit_record.html", {**opened, "access": access})


@console_view("export_audit")
@require_POST
def verify(request: HttpRequest) -> HttpResponse:
    access = console_access(request)
    result = svc.audit_chain_verify(actor=request.user, tenant=access.tenant)
    return render(request, "console/audit_verify.html", {"result": result}, status=200 if result.ok else 409)


@console_view("export_audit")
@require_GET
def export(request: HttpRequest) -> StreamingHttpResponse:
    access = console_access(request)
    records = svc.audit_records(tenant=access.tenant, **_filters(request))
    response = StreamingHttpResponse(svc.audit_export(records=records, actor=request.user, tenant=access.tenant),
                                     content_type="application/x-ndjson")
    response["Content-Disposition"] = 'attachment; filename="verity-audit.jsonl"'
    return response
