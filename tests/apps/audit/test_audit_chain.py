"""The audit hash chain: appends link up, any tampering is found and located, the app cannot edit."""

from __future__ import annotations

import random

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from apps.audit.models import AppendOnlyError, AuditRecord
from apps.audit.services import GENESIS_HASH, audit_append, audit_verify

pytestmark = pytest.mark.django_db


def _chain(n: int) -> list[AuditRecord]:
    return [audit_append(event="turn.completed", actor="user:alice", tenant="demo", subject=f"reply-{i}",
                         payload={"i": i, "text": "hello"}, verdicts=[{"stage": "input", "rule": "size",
                                                                        "action": "allow", "score": 1.0}],
                         model_version="smollm2/r1", pack_version="finance@1") for i in range(n)]


def test_records_link_to_their_predecessor():
    records = _chain(3)
    assert records[0].prev_hash == GENESIS_HASH
    assert records[1].prev_hash == records[0].hash and records[2].prev_hash == records[1].hash
    assert [r.seq for r in records] == [1, 2, 3]
    assert audit_verify().ok and audit_verify().checked == 3


def test_unknown_event_names_are_refused():
    with pytest.raises(ValueError, match="turn.complete"):
        audit_append(event="turn.complete", actor=None, tenant=None, subject="x", payload={})


def test_the_app_cannot_update_or_delete_records():
    record = _chain(1)[0]
    record.actor = "mallory"
    with pytest.raises(AppendOnlyError):
        record.save()
    with pytest.raises(AppendOnlyError):
        record.delete()
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().update(actor="mallory")
    with pytest.raises(AppendOnlyError):
        AuditRecord.objects.all().delete()


def _raw(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.parametrize("tamper", ["edit", "delete", "relink"])
def test_verify_names_the_first_tampered_record(tamper):
    _chain(6)
    target = random.Random(tamper).randint(2, 5)
    if tamper == "edit":
        _raw("UPDATE audit_auditrecord SET actor = %s WHERE seq = %s", ["user:mallory", target])
        expected = target
    elif tamper == "delete":
        _raw("DELETE FROM audit_auditrecord WHERE seq = %s", [target])
        expected = target + 1
    else:
        _raw("UPDATE audit_auditrecord SET prev_hash = %s WHERE seq = %s", [GENESIS_HASH, target])
        expected = target
    result = audit_verify()
    assert not result.ok and result.broken_seq == expected
    with pytest.raises(CommandError, match=f"#{expected}"):
        call_command("audit_verify")


def test_verify_command_reports_an_intact_chain(capsys):
    _chain(2)
    call_command("audit_verify")
    assert "2 records verified" in capsys.readouterr().out
