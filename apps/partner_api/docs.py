"""The public contract pages: /v1/openapi.json and a readable /v1/docs rendered from the same document.

Both are public (no key): partners read the contract before they have one. The docs page is plain
server-rendered HTML (the site's CSP allows no inline script).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from apps.partner_api.schema import openapi_document


@require_GET
def openapi_json(request: HttpRequest) -> HttpResponse:
    return JsonResponse(openapi_document(server_url=request.build_absolute_uri("/").rstrip("/") or "/"))


@require_GET
def docs_page(request: HttpRequest) -> HttpResponse:
    document = openapi_document()
    operations = []
    for route, methods in document["paths"].items():
        for method, operation in methods.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            operations.append({
                "method": method.upper(), "path": route, "summary": operation["summary"],
                "operation_id": operation["operationId"], "body": body.get("$ref", "").rsplit("/", 1)[-1],
                "statuses": sorted(operation["responses"]),
            })
    return render(request, "partner_api/docs.html", {"info": document["info"], "operations": operations})
