"""`manage.py audit_export`: JSON lines of the whole chain (the export audited), and --verify FILE."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.models import AuditRecord
from tests.apps.audit._chain import build_chain

pytestmark = pytest.mark.django_db


def _export(tmp_path):
    path = tmp_path / "audit.jsonl"
    call_command("audit_export", "--output", str(path), "--actor", "user:auditor")
    return path, [json.loads(line) for line in path.read_text().splitlines()]


def test_export_writes_every_record_and_audits_itself(tmp_path):
    build_chain(5)
    path, lines = _export(tmp_path)
    assert [line["seq"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[-1]["event"] == "audit.exported" and lines[-1]["actor"] == "user:auditor"
    assert AuditRecord.objects.filter(event="audit.exported").count() == 1
    assert {"hash", "prev_hash", "seal", "payload_sealed", "data_subject"} <= set(lines[0])


def test_verify_from_file_accepts_an_intact_export_and_locates_tampering(tmp_path, capsys):
    build_chain(5)
    path, lines = _export(tmp_path)
    call_command("audit_export", "--verify", str(path))
    assert "6 records verified" in capsys.readouterr().out
    edited = [dict(line) for line in lines]
    edited[2]["actor"] = "user:mallory"
    path.write_text("".join(json.dumps(line) + "\n" for line in edited))
    with pytest.raises(CommandError, match="#3: edited"):
        call_command("audit_export", "--verify", str(path))
    path.write_text("".join(json.dumps(line) + "\n" for i, line in enumerate(lines) if i != 3))
    with pytest.raises(CommandError, match="#4: missing"):
        call_command("audit_export", "--verify", str(path), "--no-seals")
    path.write_text("not json\n")
    with pytest.raises(CommandError, match="line 1: not JSON"):
        call_command("audit_export", "--verify", str(path))
