"""Console pages for the review queue: list with filters, one item with its conversation, actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from apps.console import review_services as svc
from apps.console.models import ReviewReason, ReviewStatus
from apps.console.roles import console_access, console_view
from apps.conversations.models import Message
from apps.core.errors import ApplicationError, ErrorCode


@console_view("review_queue")
@require_GET
def queue_page(request: HttpRequest) -> HttpResponse:
    tenant = console_access(request).tenant
    svc.review_queue_sync(tenant=tenant)
    filters = {key: request.GET.get(key, "") for key in ("status", "reason", "domain")}
    items = svc.review_items(tenant=tenant, assignee=request.user if request.GET.get("mine") else None,
                             **filters)[:200]
    return render(request, "console/review_queue.html", {
        "items": items, "filters": filters, "reasons": ReviewReason.choices, "statuses": ReviewStatus.choices,
    })


@console_view("review_queue")
@require_GET
def item_page(request: HttpRequest, item_id: str) -> HttpResponse:
    item = svc.review_item_get(tenant=console_access(request).tenant, item_id=item_id)
    transcript = Message.objects.filter(conversation=item.conversation).order_by("created_at")
    return render(request, "console/review_item.html", {
        "item": item, "transcript": transcript, "notes": item.notes.select_related("author").order_by("created_at"),
        "human_profile": svc.HUMAN_PROFILE,
    })


@console_view("review_queue")
@require_POST
def item_action(request: HttpRequest, item_id: str, action: str) -> HttpResponse:
    access = console_access(request)
    item = svc.review_item_get(tenant=access.tenant, item_id=item_id)
    text = request.POST.get("text", "")
    try:
        if action == "assign":
            assignee = request.user
            if request.POST.get("assignee"):
                assignee = get_user_model().objects.filter(
                    username=request.POST["assignee"], memberships__tenant=access.tenant).first()
                if assignee is None:
                    raise ApplicationError(ErrorCode.VALIDATION, "No such user in your organisation.",
                                           field="assignee")
            svc.review_item_assign(item=item, actor=request.user, assignee=assignee)
        elif action == "annotate":
            svc.review_item_annotate(item=item, actor=request.user, text=text)
        elif action == "resolve":
            svc.review_item_resolve(item=item, actor=request.user, text=text)
        elif action == "reply":
            svc.review_human_reply(item=item, actor=request.user, text=text)
        else:
            raise ApplicationError(ErrorCode.NOT_FOUND, f"Unknown review action {action!r}.")
    except ApplicationError as exc:
        if exc.code == ErrorCode.NOT_FOUND:
            raise
        messages.error(request, exc.message)
    else:
        messages.success(request, {"assign": "Assigned.", "annotate": "Note added.", "resolve": "Resolved.",
                                   "reply": "Your reply was sent to the customer."}[action])
    return redirect("console:review-item", item_id=item.id)
