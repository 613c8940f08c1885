"""Who may see what on /v1: no key -> 401, revoked -> 401 on the next request, scopes -> 403,
another tenant's (or another app's, or a web customer's) conversation -> 404 on every object route.
"""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from apps.apikeys.services import api_key_revoke
from apps.conversations.services import conversation_create
from tests.apps.partner_api.conftest import bearer

OBJECT_ROUTES = [
    ("get", "/v1/conversations/{id}", None),
    ("delete", "/v1/conversations/{id}", None),
    ("get", "/v1/conversations/{id}/messages", None),
    ("post", "/v1/conversations/{id}/feedback", {"message_id": str(uuid.uuid4()), "rating": 1}),
    ("post", "/v1/conversations/{id}/escalations", {"reason": "please review"}),
]


def _call(client: Client, method: str, url: str, body, headers) -> object:
    kwargs = {"content_type": "application/json", "data": body} if body is not None else {}
    return getattr(client, method)(url, **kwargs, **headers)


@pytest.fixture
def own_conversation(issue):
    key, api_key = issue(name="owner")
    response = Client().post("/v1/conversations", {"model": "finance", "title": "mine"},
                             content_type="application/json", **bearer(key))
    assert response.status_code == 201, response.content
    return key, response.json()["id"]


def test_no_key_and_bad_schemes_are_401_with_the_openai_body(own_conversation):
    _, conversation_id = own_conversation
    client = Client()
    for headers in ({}, {"HTTP_AUTHORIZATION": "Basic abc"}, {"HTTP_AUTHORIZATION": "Bearer nonsense"}):
        for method, route, body in [("get", "/v1/models", None), *OBJECT_ROUTES]:
            response = _call(client, method, route.format(id=conversation_id), body, headers)
            assert response.status_code == 401, (method, route, headers)
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"


def test_a_signed_in_customer_session_is_not_a_key(own_conversation, customer_client):
    _, conversation_id = own_conversation
    for method, route, body in OBJECT_ROUTES:
        assert _call(customer_client, method, route.format(id=conversation_id), body, {}).status_code == 401


def test_other_tenants_and_other_apps_get_404_on_every_object_route(own_conversation, issue):
    owner_key, conversation_id = own_conversation
    other_tenant_key, _ = issue(name="intruder", tenant_slug="othercorp")
    other_app_key, _ = issue(name="another app")  # same tenant, different partner app
    for key in (other_tenant_key, other_app_key):
        for method, route, body in OBJECT_ROUTES:
            response = _call(Client(), method, route.format(id=conversation_id), body, bearer(key))
            assert response.status_code == 404, (method, route)
            assert response.json()["error"]["code"] == "not_found"
        listed = Client().get("/v1/conversations", **bearer(key)).json()
        assert listed["data"] == []
    assert Client().get(f"/v1/conversations/{conversation_id}", **bearer(owner_key)).status_code == 200


def test_a_web_customers_conversation_is_invisible_to_keys(issue, customer):
    from apps.accounts.services import demo_tenant_get

    key, _ = issue()
    web = conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")
    assert Client().get(f"/v1/conversations/{web.id}", **bearer(key)).status_code == 404
    assert Client().get("/v1/conversations/not-a-uuid", **bearer(key)).status_code == 404


def test_a_revoked_key_is_refused_on_its_next_request(issue):
    key, api_key = issue()
    assert Client().get("/v1/models", **bearer(key)).status_code == 200
    api_key_revoke(prefix=api_key.prefix)
    response = Client().get("/v1/models", **bearer(key))
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


def test_endpoint_scopes_are_enforced(issue):
    key, _ = issue(endpoints=["models"])
    assert Client().get("/v1/models", **bearer(key)).status_code == 200
    response = Client().get("/v1/conversations", **bearer(key))
    assert response.status_code == 403 and response.json()["error"]["code"] == "scope_denied"


def test_unknown_urls_and_methods_keep_the_error_shape(issue):
    key, _ = issue()
    response = Client().get("/v1/nothing-here", **bearer(key))
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_url"
    response = Client().put("/v1/models", **bearer(key))
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    response = Client().post("/v1/chat/completions", data="{not json", content_type="application/json",
                             **bearer(key))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
