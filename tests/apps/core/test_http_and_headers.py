"""Request parsing, error bodies, security headers and /healthz."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from apps.core.errors import ApplicationError, ErrorCode
from apps.core.http import json_body


@pytest.mark.parametrize(("body", "code"), [
    (b"\xff\xfe not utf-8", ErrorCode.INVALID_ENCODING),
    (b"{broken", ErrorCode.INVALID_JSON),
    (b"", ErrorCode.INVALID_JSON),
    (b"[1, 2]", ErrorCode.INVALID_JSON),
    (b"{" + b" " * 300_000 + b"}", ErrorCode.MESSAGE_TOO_LONG),
])
def test_json_body_refuses_what_is_not_a_utf8_json_object(body, code):
    request = RequestFactory().post("/x", data=body, content_type="application/json")
    with pytest.raises(ApplicationError) as info:
        json_body(request)
    assert info.value.code == code and 400 <= info.value.status < 500


def test_json_body_returns_the_object():
    request = RequestFactory().post("/x", data='{"text": "héllo"}'.encode(), content_type="application/json")
    assert json_body(request) == {"text": "héllo"}


def test_every_response_carries_a_strict_csp(client, db):
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response["X-Content-Type-Options"] == "nosniff"


def test_unknown_api_route_is_a_json_404(client, db):
    response = client.get("/chat/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_healthz_names_database_broker_and_model(client, db):
    response = client.get("/healthz")
    body = response.json()
    assert body["mode"] == "services"
    assert body["database"]["kind"] == "postgresql" and body["database"]["ok"] is True
    assert body["broker"]["kind"] == "redis" and body["broker"]["ok"] is True
    assert "path" in body["model"] and "ok" in body["model"]
    assert response.status_code == (200 if body["model"]["ok"] else 503)


def test_healthz_reports_an_unreachable_broker(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    body = client.get("/healthz").json()
    assert body["broker"]["ok"] is False and "error" in body["broker"]
    assert body["status"] == "degraded"
