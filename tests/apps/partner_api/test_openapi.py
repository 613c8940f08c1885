"""The contract: /v1/openapi.json is valid OpenAPI 3.1 that matches the routes, the docs page renders
it, and schemathesis fuzzes every operation with a valid and an invalid key: no 5xx, and status codes,
content types, bodies and headers all conform to the document.
"""

from __future__ import annotations

import schemathesis
from django.test import Client
from django.urls import resolve
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from apps.partner_api.schema import openapi_document

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]


def test_the_schema_is_served_and_every_documented_route_resolves(db):
    document = Client().get("/v1/openapi.json").json()
    assert document["openapi"] == "3.1.0" and document["components"]["securitySchemes"]["bearerAuth"]
    for route in document["paths"]:
        match = resolve(route.replace("{model_id}", "finance").replace("{conversation_id}", "abc"))
        assert match.url_name != "" and match.func.__name__ != "not_found", route
    schemathesis.openapi.from_dict(document)  # raises on an invalid document


def test_the_docs_page_lists_every_operation(db):
    response = Client().get("/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    for methods in openapi_document()["paths"].values():
        for operation in methods.values():
            assert f'id="{operation["operationId"]}"' in html
    assert "<script" not in html  # the site's CSP forbids inline script


def _fuzz(operation, keys: tuple[str, ...], base_url: str) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def fuzz(case):
        for key in keys:
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {key}"})
            case.validate_response(response, checks=CHECKS)

    fuzz()


def test_fuzzed_requests_never_5xx_and_conform(issue, inline_worker, live_server):
    schema = schemathesis.openapi.from_dict(openapi_document(server_url=live_server.url))
    keys = (issue(name="fuzzer")[0], "vk_000000000000_" + "x" * 43)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 10
    for operation in operations:
        _fuzz(operation, keys, live_server.url)
