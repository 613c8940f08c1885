"""The audit hash chain: appends link up and are sealed, tampering is found and located, the app cannot edit."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.crypto import record_seal
from apps.audit.models import AppendOnlyError, AuditRecord, ChainHead
from apps.audit.services import GENESIS_HASH, audit_append, audit_verify
from tests.apps.audit._chain import build_chain, guard_lifted, raw

pytestmark = pytest.mark.django_db


def test_records_link_to_their_predecessor_and_are_sealed():
    records = build_chain(3)
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].hash and records[2].prev_hash == records[1].hash
    assert [r.seq for r in records] == [1, 2, 3]
    assert all(r.seal == record_seal(r.hash) for r in records)
    head = ChainHead.objects.get()
    assert (head.seq, head.hash) == (3, records[2].hash)
    assert audit_verify().ok and audit_verify().checked == 3


def test_unknown_event_names_are_refused():
    with pytest.raises(ValueError, match="turn.complete"):
        audit_append(event="turn.complete", actor=None, tenant=None, subject="x", payload={})


def test_the_orm_cannot_update_or_delete_records():
    record = build_chain(1)[0]
    record.actor = "mallory"
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        record.delete()
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().update(actor="mallory")
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().delete()


@pytest.mark.parametrize(("tamper", "kind"), [("edit", "edited"), ("delete", "missing"), ("relink", "edited"),
                                              ("delete_newest", "missing"), ("swap", "moved"),
                                              ("forge", "forged")])
def test_verify_names_the_first_tampered_record_and_what_happened(tamper, kind):
    records = build_chain(6)
    with guard_lifted():
        if tamper == "edit":
            raw("UPDATE audit_auditrecord SET actor = %s WHERE seq = %s", ["user:mallory", 4])
        elif tamper == "delete":
            raw("DELETE FROM audit_auditrecord WHERE seq = %s", [4])
        elif tamper == "relink":
            raw("UPDATE audit_auditrecord SET prev_hash = %s WHERE seq = %s", [GENESIS_HASH, 4])
        elif tamper == "delete_newest":
            raw("DELETE FROM audit_auditrecord WHERE seq = %s", [6])
        elif tamper == "swap":
            raw("UPDATE audit_auditrecord SET seq = -1 WHERE seq = 4")
            raw("UPDATE audit_auditrecord SET seq = 4 WHERE seq = 5")
            raw("UPDATE audit_auditrecord SET seq = 5 WHERE seq = -1")
        else:  # a self-consistent record appended without the server's key
            forged = AuditRecord(**{f.attname: getattr(records[-1], f.attname) for f in AuditRecord._meta.fields})
            forged.seq, forged.prev_hash, forged.actor = 7, records[-1].hash, "user:mallory"
            from apps.audit.crypto import record_hash
            forged.hash, forged.seal = record_hash(forged), "f" * 64
            raw("INSERT INTO audit_auditrecord (seq, created_at, event, actor, tenant, subject, payload_digest,"
                " verdicts, model_version, pack_version, data_subject, payload_sealed, prev_hash, hash, seal)"
                " SELECT %s, created_at, event, %s, tenant, subject, payload_digest, verdicts, model_version,"
                " pack_version, data_subject, payload_sealed, %s, %s, %s FROM audit_auditrecord WHERE seq = 6",
                [7, forged.actor, forged.prev_hash, forged.hash, forged.seal])
    expected = {"edit": 4, "delete": 4, "relink": 4, "delete_newest": 6, "swap": 4, "forge": 7}[tamper]
    result = audit_verify()
    assert not result.ok and (result.broken_seq, result.kind) == (expected, kind), result
    with pytest.raises(CommandError, match=f"#{expected}: {kind}"):
        call_command("audit_verify")


def test_verify_command_reports_an_intact_chain(capsys):
    build_chain(2)
    call_command("audit_verify")
    assert "2 records verified" in capsys.readouterr().out
