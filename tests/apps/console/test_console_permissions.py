"""The permission matrix: every console URL and action x every role gives exactly the expected answer,
and another tenant's objects are not found.

Expected answers come from the role table written out here by hand (not imported from the code), so a
change to `apps.console.roles` that widens or narrows a role fails this test.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, get_resolver

from apps.console.roles import PERMISSIONS

# What each role may do, as the issue and the product describe it.
EXPECTED = {
    "customer": set(),
    "expert": {"view_console", "edit_pack", "run_eval", "review_queue", "view_dashboard", "use_arena"},
    "approver": {"view_console", "run_eval", "approve_pack", "publish_pack", "view_dashboard", "use_arena"},
    "auditor": {"view_console", "view_audit", "view_audit_content", "export_audit", "view_dashboard"},
    "admin": set(PERMISSIONS),
}


def _routes(pk: int, run_id: str, item_id: str, seq: int, match_id: str) -> list[tuple[str, str, str, dict]]:
    """(method, url, permission, data) for every console route; POST bodies are harmless or invalid."""
    return [
        ("get", "/console/", "view_console", {}),
        ("get", "/console/dashboard/", "view_dashboard", {}),
        ("get", "/console/metrics", "view_dashboard", {}),
        ("get", "/console/packs/", "view_console", {}),
        ("get", f"/console/packs/diff?a={pk}&b={pk}", "view_console", {}),
        ("get", f"/console/packs/{pk}/", "view_console", {}),
        ("post", f"/console/packs/{pk}/draft", "edit_pack", {"mode": "yaml", "yaml": "- not a mapping"}),
        ("post", f"/console/packs/{pk}/evaluate", "run_eval", {}),
        ("post", f"/console/packs/{pk}/approve", "approve_pack", {}),
        ("post", f"/console/packs/{pk}/publish", "publish_pack", {}),
        ("post", f"/console/packs/{pk}/rollback", "publish_pack", {}),
        ("get", "/console/packs/canary/finance/", "view_console", {}),
        ("post", f"/console/packs/{pk}/canary", "publish_pack", {"percent": "0"}),
        ("post", "/console/packs/canary/finance/clear", "publish_pack", {}),
        ("get", f"/console/evals/{run_id}/", "view_console", {}),
        ("get", f"/console/evals/{run_id}.json", "view_console", {}),
        ("get", "/console/review/", "review_queue", {}),
        ("get", f"/console/review/{item_id}/", "review_queue", {}),
        ("post", f"/console/review/{item_id}/annotate", "review_queue", {"text": "looked at it"}),
        ("get", "/console/audit/", "view_audit", {}),
        ("post", "/console/audit/verify", "export_audit", {}),
        ("get", "/console/audit/export.jsonl", "export_audit", {}),
        ("get", f"/console/audit/{seq}/", "view_audit", {}),
        ("get", "/console/arena/", "use_arena", {}),
        ("post", "/console/arena/start", "use_arena", {"domain": "finance", "prompt": "", "max_tokens": "8"}),
        ("get", f"/console/arena/{match_id}/", "use_arena", {}),
        ("get", f"/console/arena/{match_id}/events.json", "use_arena", {}),
        ("post", f"/console/arena/{match_id}/vote", "use_arena", {"winner": "nobody"}),
    ]


@pytest.fixture
def objects(staff, make_flagged):
    from apps.audit.models import AuditRecord
    from apps.console.models import ArenaMatch, EvalRun
    from apps.console.review_services import review_items, review_queue_sync
    from apps.prompt_packs.selectors import pack_published_get

    pack = pack_published_get(domain="finance")
    run = EvalRun.objects.create(pack_version=pack, total=1)
    make_flagged(staff.tenant, staff.users["customer"])
    review_queue_sync(tenant=staff.tenant)
    item = review_items(tenant=staff.tenant).first()
    seq = AuditRecord.objects.filter(tenant="").order_by("seq").first().seq
    match = ArenaMatch.objects.create(tenant=staff.tenant, pack_version=pack, prompt="p", left_profile="r1",
                                      right_profile="zero")
    return pack.pk, str(run.id), str(item.id), seq, str(match.id)


def test_every_console_route_is_in_the_matrix(objects):
    """A new console URL without a row here (and a permission) fails this test."""
    console = next(p for p in get_resolver().url_patterns if str(p.pattern) == "console/")
    names = {p.name for p in console.url_patterns if isinstance(p, URLPattern)}
    covered = {"home", "dashboard", "metrics", "packs", "pack-diff", "pack-version", "pack-draft",
               "pack-evaluate", "pack-approve", "pack-publish", "pack-rollback", "canary", "canary-start",
               "canary-clear", "eval-page", "eval-status",
               "review", "review-item", "review-action", "audit", "audit-verify", "audit-export", "audit-record",
               "arena", "arena-start", "arena-match", "arena-events", "arena-vote"}
    assert names == covered
    for pattern in console.url_patterns:
        if pattern.name != "metrics":
            assert getattr(pattern.callback, "console_permission", None) in PERMISSIONS, pattern.name


@pytest.mark.parametrize("role", list(EXPECTED))
def test_permission_matrix(staff, objects, role, monkeypatch):
    from apps.console import pack_services

    monkeypatch.setattr(pack_services, "eval_run_dispatch", lambda run_id: None)  # no engine in this test
    client = staff.client(role)
    for method, url, permission, data in _routes(*objects):
        response = getattr(client, method)(url, data)
        allowed = permission in EXPECTED[role]
        if allowed:
            assert response.status_code != 403, f"{role} was refused {method.upper()} {url}"
            assert response.status_code < 500, f"{role} {method.upper()} {url}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{role} got {response.status_code} for {method.upper()} {url}"


def test_signed_out_visitors_are_sent_to_sign_in(objects, client):
    for method, url, _permission, data in _routes(*objects):
        response = getattr(client, method)(url, data)
        if url.endswith("metrics"):
            assert response.status_code == 401
        else:
            assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url


def test_another_tenants_objects_are_not_found(staff, other_staff, objects, make_flagged):
    """The rival tenant's admin holds every permission, yet sees none of the demo tenant's items."""
    from apps.audit.services import audit_append

    _pk, _run, item_id, _seq, match_id = objects
    demo_record = audit_append(event="conversation.exported", actor=staff.users["customer"], tenant=staff.tenant,
                               subject="x", payload={})
    rival = other_staff.client("admin")
    assert rival.get(f"/console/review/{item_id}/").status_code == 404
    assert rival.post(f"/console/review/{item_id}/resolve", {}).status_code == 404
    assert rival.post(f"/console/review/{item_id}/reply", {"text": "hi"}).status_code == 404
    assert rival.get(f"/console/audit/{demo_record.seq}/").status_code == 404
    assert rival.get(f"/console/arena/{match_id}/").status_code == 404
    assert rival.post(f"/console/arena/{match_id}/vote", {"winner": "left"}).status_code == 404
    assert str(item_id) not in rival.get("/console/review/").content.decode()
    # packs are shared, but the canary comparison counts only the viewer's own conversations
    assert _canary_conversations(rival) == 0 and _canary_conversations(staff.client("admin")) == 1
    assert rival.post(f"/console/packs/{_pk}/canary", {"percent": "10"}).status_code == 302  # shared pack
    assert staff.client("admin").get(f"/console/audit/{demo_record.seq}/").status_code == 200


def _canary_conversations(client) -> int:
    """The conversations cell of the published row on the finance canary page."""
    import re

    page = client.get("/console/packs/canary/finance/").content.decode()
    row = page[page.index('data-role="published"'):]
    return int(re.findall(r"<td>(\d+)</td>", row[:row.index("</tr>")])[0])


def test_a_member_of_no_tenant_and_the_legacy_compliance_role(staff, db):
    from apps.accounts.models import Membership, User

    loner = User.objects.create_user(username="loner", password="x")
    from django.test import Client

    client = Client()
    client.force_login(loner)
    assert client.get("/console/").status_code == 403
    compliance = User.objects.create_user(username="officer", password="x", default_tenant=staff.tenant)
    Membership.objects.create(tenant=staff.tenant, user=compliance, role="compliance")
    client.force_login(compliance)
    assert client.get("/console/audit/").status_code == 200
    assert client.post("/console/packs/1/draft", {}).status_code == 403
