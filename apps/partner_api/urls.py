"""/v1 routes. Unknown paths and methods under /v1 answer with OpenAI-style error bodies too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from apps.partner_api import apis, docs
from apps.partner_api.errors import PartnerApiError, error_json


def by_method(**views: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """One URL, one API class per HTTP method (list and create stay separate operations)."""

    @csrf_exempt
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        handler = views.get(request.method.lower())
        if handler is None:
            allowed = ", ".join(sorted(m.upper() for m in views))
            return error_json(PartnerApiError(405, "method_not_allowed",
                                              f"Method {request.method} not allowed here (allowed: {allowed})."))
        return handler(request, *args, **kwargs)

    return view


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_json(PartnerApiError(404, "unknown_url", f"Unknown URL {request.path}; see /v1/openapi.json."))


app_name = "partner_api"
urlpatterns = [
    path("models", apis.ModelListApi.as_view(), name="models"),
    path("models/<str:model_id>", apis.ModelDetailApi.as_view(), name="model"),
    path("chat/completions", apis.ChatCompletionCreateApi.as_view(), name="chat-completions"),
    path("conversations", by_method(get=apis.ConversationListApi.as_view(),
                                    post=apis.ConversationCreateApi.as_view()), name="conversations"),
    path("conversations/<str:conversation_id>", apis.ConversationDetailApi.as_view(), name="conversation"),
    path("conversations/<str:conversation_id>/messages", apis.MessageListApi.as_view(), name="messages"),
    path("conversations/<str:conversation_id>/feedback", apis.FeedbackCreateApi.as_view(), name="feedback"),
    path("conversations/<str:conversation_id>/escalations", apis.EscalationCreateApi.as_view(),
         name="escalations"),
    path("openapi.json", docs.openapi_json, name="openapi"),
    path("docs", docs.docs_page, name="docs"),
    re_path(r"^(?P<rest>.*)$", not_found),
]
