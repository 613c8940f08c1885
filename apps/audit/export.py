"""Export the audit chain as JSON lines, and verify a chain from such a file.

Each line is one record with every stored field (the payload stays sealed; nothing is decrypted on
export). The export is itself audited: the `audit.exported` record is appended first, so the file ends
with the record of its own making. `audit_file_verify` rebuilds the records from a file and runs the
same check as the database verify; seals are checked with this server's audit key unless told not to
(a third party without the key still checks every hash and link).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from apps.audit.models import AuditRecord
from apps.audit.services import audit_append
from apps.audit.verify import VerifyResult, verify_records
from apps.core.jsonl import JsonLinesError, jsonl_rows

FIELDS = ("seq", "created_at", "event", "actor", "tenant", "subject", "payload_digest", "verdicts",
          "model_version", "pack_version", "data_subject", "payload_sealed", "prev_hash", "hash", "seal")


def record_line(record: AuditRecord) -> str:
    row = {name: getattr(record, name) for name in FIELDS}
    row["created_at"] = record.created_at.isoformat()
    return json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n"


def audit_records_export(*, out: TextIO, actor: Any = "system", tenant: Any = None) -> int:
    """Write the whole chain to `out`, oldest first, after auditing the export; returns lines written."""
    total = AuditRecord.objects.count() + 1
    audit_append(event="audit.exported", actor=actor, tenant=tenant, subject="audit:export",
                 payload={"count": total, "format": "jsonl"}, data_subject="")
    written = 0
    for record in AuditRecord.objects.order_by("seq").iterator(chunk_size=1000):
        out.write(record_line(record))
        written += 1
    return written


class ExportFormatError(ValueError):
    """A line of an export file is not a record."""


def _record_from(row: dict[str, Any], line_no: int) -> AuditRecord:
    try:
        values = {name: row[name] for name in FIELDS}
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        values["seq"] = int(values["seq"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportFormatError(f"line {line_no}: not an audit record ({exc})") from exc
    return AuditRecord(**values)


def _read(path: Path) -> Iterator[AuditRecord]:
    try:
        for line_no, row in jsonl_rows(path):
            yield _record_from(row, line_no)
    except JsonLinesError as exc:
        raise ExportFormatError(str(exc)) from exc


def audit_file_verify(*, path: str | Path, check_seals: bool = True) -> VerifyResult:
    """Verify the chain stored in an export file; the first broken record is named as for the database."""
    path = Path(path)

    def positions() -> dict[str, int]:
        return {record.hash: record.seq for record in _read(path)}

    return verify_records(_read(path), positions=positions, check_seals=check_seals)
