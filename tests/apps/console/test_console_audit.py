"""Audit viewer: search, open (content only for allowed roles, the viewing audited), verify, export."""

from __future__ import annotations

import json

from apps.audit.models import AuditRecord
from apps.audit.services import audit_append


def _turn_record(staff, make_flagged):
    reply = make_flagged(staff.tenant, staff.users["customer"], content="A private answer about my debts.")
    return audit_append(event="turn.completed", actor=staff.users["customer"], tenant=staff.tenant,
                        subject=str(reply.id), payload={"content": reply.content}, verdicts=reply.verdicts)


def test_search_and_open_with_content_for_auditors_and_the_viewing_is_audited(staff, make_flagged):
    record = _turn_record(staff, make_flagged)
    auditor = staff.client("auditor")
    listing = auditor.get("/console/audit/?event=turn.completed").content.decode()
    table = listing[listing.index('data-testid="audit-table"'):]
    assert f'/console/audit/{record.seq}/' in table and "<td>pack.published</td>" not in table
    page = auditor.get(f"/console/audit/{record.seq}/").content.decode()
    assert "A private answer about my debts." in page and "structuring" in page  # content and verdicts
    viewed = AuditRecord.objects.filter(event="audit.viewed", subject=f"audit:{record.seq}").get()
    assert viewed.actor == "user:demo-auditor"


def test_a_role_without_content_rights_sees_the_record_but_not_the_content(staff, make_flagged, db):
    from django.contrib.auth.models import Group

    from apps.console.roles import group_name

    record = _turn_record(staff, make_flagged)
    Group.objects.get(name=group_name("admin")).permissions.remove(
        *Group.objects.get(name=group_name("admin")).permissions.filter(codename="view_audit_content"))
    page = staff.client("admin").get(f"/console/audit/{record.seq}/").content.decode()
    assert "A private answer" not in page and record.hash in page and 'data-state="hidden"' in page


def test_verify_chain_reports_ok_and_the_export_is_json_lines(staff, make_flagged):
    _turn_record(staff, make_flagged)
    auditor = staff.client("auditor")
    result = auditor.post("/console/audit/verify")
    assert result.status_code == 200 and "audit chain OK" in result.content.decode()
    export = auditor.get("/console/audit/export.jsonl?event=turn.completed")
    lines = [json.loads(line) for line in b"".join(export.streaming_content).decode().splitlines()]
    assert len(lines) == 1 and lines[0]["event"] == "turn.completed" and len(lines[0]["hash"]) == 64
    assert AuditRecord.objects.filter(event="audit.exported").exists()
    assert AuditRecord.objects.filter(event="audit.verified").exists()


def test_verify_chain_names_a_broken_record(staff, make_flagged):
    from django.db import connection

    record = _turn_record(staff, make_flagged)
    from tests.apps.audit._chain import guard_lifted

    with guard_lifted(), connection.cursor() as cursor:  # tamper as a database owner could (trigger off)
        cursor.execute("UPDATE audit_auditrecord SET actor = 'someone-else' WHERE seq = %s", [record.seq])
    result = staff.client("auditor").post("/console/audit/verify")
    assert result.status_code == 409
    assert f"BROKEN at record #{record.seq}" in result.content.decode()


def test_the_content_is_the_decrypted_payload_not_a_copy_from_the_conversation(staff, db):
    """A record whose payload mentions nothing stored elsewhere: only decryption can show it."""
    record = audit_append(event="conversation.exported", actor=staff.users["customer"], tenant=staff.tenant,
                          subject="conversation:x", payload={"format": "md", "note": "only in the sealed payload"})
    assert record.payload_sealed and "only in the sealed payload" not in record.payload_sealed
    page = staff.client("auditor").get(f"/console/audit/{record.seq}/").content.decode()
    assert 'data-state="shown"' in page and "only in the sealed payload" in page
    hidden = staff.client("expert").get(f"/console/audit/{record.seq}/")
    assert hidden.status_code == 403  # an expert may not open audit records at all


def test_a_shredded_subject_shows_erased_and_the_viewing_is_still_audited(staff, make_flagged):
    from apps.audit.erasure import subject_erase

    record = _turn_record(staff, make_flagged)
    subject_erase(user=staff.users["customer"], actor=staff.users["admin"])
    before = AuditRecord.objects.filter(event="audit.viewed").count()
    for role in ("auditor", "admin"):
        page = staff.client(role).get(f"/console/audit/{record.seq}/").content.decode()
        assert 'data-state="erased"' in page and 'data-testid="content-erased"' in page
        assert "A private answer" not in page and record.hash in page
    assert AuditRecord.objects.filter(event="audit.viewed").count() == before + 2
    assert staff.client("auditor").post("/console/audit/verify").status_code == 200  # the chain still verifies


def test_a_record_without_personal_data_says_so(staff, db):
    record = audit_append(event="audit.verified", actor="system", tenant=staff.tenant, subject="audit:chain",
                          payload={"ok": True})
    page = staff.client("auditor").get(f"/console/audit/{record.seq}/").content.decode()
    assert 'data-state="digest_only"' in page
