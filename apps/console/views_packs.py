"""Console pages for prompt packs: list, version detail and draft editor, diff, evaluation, lifecycle,
and the canary share (compare a domain's versions; starting or ending a share needs `publish_pack`).

Views authorise (`console_view`), parse, call one service and redirect or render; errors from the
services come back to the page as a message next to the form they concern.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.console import pack_services as svc
from apps.console.models import EvalRun
from apps.console.roles import console_access, console_view
from apps.console.stats import canary_compare
from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.models import PackStatus, PackVersion
from apps.prompt_packs.selectors import pack_version_get, pack_versions_list
from apps.prompt_packs.services import pack_canary_clear, pack_canary_set


def _run_get(run_id: str) -> EvalRun:
    try:
        return EvalRun.objects.select_related("pack_version").get(pk=run_id)
    except (EvalRun.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise ApplicationError(ErrorCode.NOT_FOUND, f"Evaluation run {run_id} does not exist.") from exc


@console_view("view_console")
@require_GET
def packs_page(request: HttpRequest) -> HttpResponse:
    by_domain: dict[str, list[PackVersion]] = {}
    for version in pack_versions_list():
        by_domain.setdefault(version.domain, []).append(version)
    return render(request, "console/packs.html", {"by_domain": by_domain, "access": console_access(request)})


def _version_context(request: HttpRequest, version: PackVersion, **extra: Any) -> dict[str, Any]:
    latest = svc.eval_latest(version)
    versions = pack_versions_list(domain=version.domain)
    return {"version": version, "access": console_access(request), "yaml": svc.pack_yaml(version),
            "form_fields": {name: version.data.get(name, "") for name in svc.FORM_FIELDS},
            "latest_eval": latest, "versions": versions, "is_author": version.created_by_id == request.user.pk,
            "statuses": PackStatus, **extra}


@console_view("view_console")
@require_GET
def version_page(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "console/pack_version.html", _version_context(request, pack_version_get(pk=pk)))


@console_view("edit_pack")
@require_POST
def draft_save(request: HttpRequest, pk: int) -> HttpResponse:
    base = pack_version_get(pk=pk)
    mode = request.POST.get("mode", "form")
    try:
        if mode == "yaml":
            draft = svc.pack_draft_save(base=base, actor=request.user, raw_yaml=request.POST.get("yaml", ""))
        else:
            fields = {name: request.POST[name] for name in svc.FORM_FIELDS if name in request.POST}
            draft = svc.pack_draft_save(base=base, actor=request.user, fields=fields)
    except ApplicationError as exc:
        context = _version_context(request, base, error=exc, error_mode=mode,
                                   yaml=request.POST.get("yaml") or svc.pack_yaml(base))
        return render(request, "console/pack_version.html", context, status=exc.status)
    messages.success(request, f"Saved draft v{draft.version} of {draft.domain}.")
    return redirect("console:pack-version", pk=draft.pk)


@console_view("view_console")
@require_GET
def diff_page(request: HttpRequest) -> HttpResponse:
    old, new = pack_version_get(pk=request.GET.get("a")), pack_version_get(pk=request.GET.get("b"))
    return render(request, "console/pack_diff.html", {"old": old, "new": new,
                                                      "lines": svc.pack_diff(old=old, new=new)})


@console_view("run_eval")
@require_POST
def eval_start(request: HttpRequest, pk: int) -> HttpResponse:
    run = svc.eval_run_start(version=pack_version_get(pk=pk), actor=request.user)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"id": str(run.id), "status_url": f"/console/evals/{run.id}.json"}, status=202)
    return redirect("console:eval-page", run_id=run.id)


@console_view("view_console")
@require_GET
def eval_page(request: HttpRequest, run_id: str) -> HttpResponse:
    run = _run_get(run_id)
    return render(request, "console/eval_run.html", {"run": run, "version": run.pack_version})


@console_view("view_console")
@require_GET
def eval_status(request: HttpRequest, run_id: str) -> JsonResponse:
    run = _run_get(run_id)
    return JsonResponse({"id": str(run.id), "status": run.status, "total": run.total, "done": run.done,
                         "passed": run.passed, "error": run.error, "results": run.results,
                         "finished": run.finished_at is not None})


def _lifecycle(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    version = pack_version_get(pk=pk)
    try:
        if action == "approve":
            version = svc.pack_approve(version=version, actor=request.user)
        elif action == "publish":
            version = svc.pack_publish(version=version, actor=request.user)
        else:
            version = svc.pack_rollback(domain=version.domain, actor=request.user)
    except ApplicationError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            raise
        context = _version_context(request, version, error=exc, error_mode=action)
        return render(request, "console/pack_version.html", context, status=exc.status)
    messages.success(request, f"{version.domain} v{version.version} is now {version.status}.")
    return redirect("console:pack-version", pk=version.pk)


@console_view("approve_pack")
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    return _lifecycle(request, pk, "approve")


@console_view("publish_pack")
@require_POST
def publish(request: HttpRequest, pk: int) -> HttpResponse:
    return _lifecycle(request, pk, "publish")


@console_view("publish_pack")
@require_POST
def rollback(request: HttpRequest, pk: int) -> HttpResponse:
    return _lifecycle(request, pk, "rollback")


def _domain_check(domain: str) -> str:
    if not PackVersion.objects.filter(domain=domain).exists():
        raise ApplicationError(ErrorCode.NOT_FOUND, f"There is no pack for the domain {domain!r}.")
    return domain


@console_view("view_console")
@require_GET
def canary_page(request: HttpRequest, domain: str) -> HttpResponse:
    access = console_access(request)
    comparison = canary_compare(tenant=access.tenant, domain=_domain_check(domain))
    return render(request, "console/canary.html", {**comparison, "access": access})


@console_view("publish_pack")
@require_POST
def canary_start(request: HttpRequest, pk: int) -> HttpResponse:
    version = pack_version_get(pk=pk)
    try:
        canary = pack_canary_set(version=version, percent=request.POST.get("percent", ""),
                                 actor=request.user)
    except ApplicationError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            raise
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{canary.percent}% of new {version.domain} conversations now get "
                                  f"v{version.version}.")
    return redirect("console:canary", domain=version.domain)


@console_view("publish_pack")
@require_POST
def canary_clear(request: HttpRequest, domain: str) -> HttpResponse:
    ended = pack_canary_clear(domain=_domain_check(domain), actor=request.user)
    if ended:
        messages.success(request, f"The canary share of {domain} has ended; new conversations get the "
                                  "published version.")
    else:
        messages.info(request, f"{domain} had no canary share.")
    return redirect("console:canary", domain=domain)
