"""Console pages for the arena: start a match, watch both sides stream, vote blind, see the Elo table."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.console import arena_services as svc
from apps.console.models import ArenaMatch
from apps.console.roles import console_access, console_view
from apps.conversations.streams import event_id_check, stream_bus
from apps.core.errors import ApplicationError, ErrorCode
from apps.prompt_packs.selectors import domains_list


def _match_get(request: HttpRequest, match_id: str) -> ArenaMatch:
    try:
        return ArenaMatch.objects.select_related("pack_version").get(pk=match_id,
                                                                    tenant=console_access(request).tenant)
    except (ArenaMatch.DoesNotExist, ValueError, TypeError, ValidationError) as exc:
        raise ApplicationError(ErrorCode.NOT_FOUND, f"Arena match {match_id} does not exist.") from exc


@console_view("use_arena")
@require_GET
def arena_page(request: HttpRequest) -> HttpResponse:
    tenant = console_access(request).tenant
    return render(request, "console/arena.html", {
        "domains": domains_list(), "elo": svc.elo_table(tenant=tenant),
        "max_tokens": svc.ARENA_MAX_TOKENS, "max_tokens_limit": svc.ARENA_MAX_TOKENS_LIMIT,
        "matches": ArenaMatch.objects.filter(tenant=tenant).select_related("pack_version")[:20],
    })


@console_view("use_arena")
@require_POST
def arena_start(request: HttpRequest) -> HttpResponse:
    try:
        match = svc.arena_match_start(tenant=console_access(request).tenant, actor=request.user,
                                      domain=request.POST.get("domain", ""), prompt=request.POST.get("prompt", ""),
                                      max_tokens=request.POST.get("max_tokens"))
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect("console:arena")
    return redirect("console:arena-match", match_id=match.id)


@console_view("use_arena")
@require_GET
def match_page(request: HttpRequest, match_id: str) -> HttpResponse:
    return render(request, "console/arena_match.html", {"match": _match_get(request, match_id),
                                                        "sides": svc.SIDES})


@console_view("use_arena")
@require_GET
def match_events(request: HttpRequest, match_id: str) -> JsonResponse:
    match = _match_get(request, match_id)
    out = {}
    for side in svc.SIDES:
        after = event_id_check(request.GET.get(f"{side}_after") or None)
        out[side] = [{"id": eid, "event": name, "data": data}
                     for eid, name, data in stream_bus().read(svc.arena_key(match.id, side), after, 0)]
    return JsonResponse(out)


@console_view("use_arena")
@require_POST
def match_vote(request: HttpRequest, match_id: str) -> HttpResponse:
    match = _match_get(request, match_id)
    try:
        svc.arena_vote(match=match, actor=request.user, winner=request.POST.get("winner", ""))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("console:arena-match", match_id=match.id)
