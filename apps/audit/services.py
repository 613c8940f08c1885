"""Audit services: append a record to the hash chain, and verify the whole chain.

Appends are serialised (a PostgreSQL advisory lock; SQLite's IMMEDIATE transactions serialise writers
already) so that two workers never link to the same previous record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from apps.audit.events import audit_event_check
from apps.audit.models import AuditRecord

GENESIS_HASH = "0" * 64
_LOCK_KEY = 0x7665726974790001  # "verity" + 1: the advisory lock id of the audit chain


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def payload_digest(payload: Any) -> str:
    return hashlib.sha256(_canonical(payload)).hexdigest()


def record_hash(record: AuditRecord) -> str:
    """The link hash over every stored field except the hash itself."""
    fields = {
        "seq": record.seq,
        "created_at": record.created_at.isoformat(),
        "event": record.event,
        "actor": record.actor,
        "tenant": record.tenant,
        "subject": record.subject,
        "payload_digest": record.payload_digest,
        "verdicts": record.verdicts,
        "model_version": record.model_version,
        "pack_version": record.pack_version,
        "prev_hash": record.prev_hash,
    }
    return hashlib.sha256(_canonical(fields)).hexdigest()


def _label(value: Any) -> str:
    """Objects from other layers are recorded by a stable label, never imported here."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    for attr in ("slug", "username"):
        if hasattr(value, attr):
            prefix = "user:" if attr == "username" else ""
            return f"{prefix}{getattr(value, attr)}"
    if hasattr(value, "domain") and hasattr(value, "version"):
        return f"{value.domain}@{value.version}"
    return str(getattr(value, "pk", value))


def _verdict_dicts(verdicts: Any) -> list[dict[str, Any]]:
    out = []
    for verdict in verdicts or []:
        out.append(verdict.as_dict() if hasattr(verdict, "as_dict") else dict(verdict))
    return json.loads(_canonical(out))  # normalise types so the stored JSON hashes identically


def audit_append(*, event: str, actor: Any, tenant: Any, subject: Any, payload: Any,
                 verdicts: Any = (), model_version: str = "", pack_version: Any = None) -> AuditRecord:
    """Append one record linked to the previous one; returns the stored record."""
    audit_event_check(event)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        last = AuditRecord.objects.order_by("-seq").values("seq", "hash").first()
        record = AuditRecord(
            seq=(last["seq"] + 1) if last else 1,
            created_at=timezone.now(),
            event=event,
            actor=_label(actor) or "system",
            tenant=_label(tenant),
            subject=_label(subject),
            payload_digest=payload_digest(payload),
            verdicts=_verdict_dicts(verdicts),
            model_version=str(model_version or "")[:200],
            pack_version=_label(pack_version)[:100],
            prev_hash=last["hash"] if last else GENESIS_HASH,
        )
        record.hash = record_hash(record)
        record.save()
    return record


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.checked} records verified"
        return f"audit chain BROKEN at record #{self.broken_seq}: {self.reason} ({self.checked} checked before it)"


def audit_verify(*, chunk: int = 2000) -> VerifyResult:
    """Recompute every link in order; name the first record whose hash, link or sequence is wrong."""
    prev_hash, expected_seq, checked = GENESIS_HASH, 1, 0
    for record in AuditRecord.objects.order_by("seq").iterator(chunk_size=chunk):
        if record.seq != expected_seq:
            return VerifyResult(False, checked, record.seq, f"sequence gap: expected #{expected_seq}")
        if record.prev_hash != prev_hash:
            return VerifyResult(False, checked, record.seq, "prev_hash does not match the previous record")
        if record_hash(record) != record.hash:
            return VerifyResult(False, checked, record.seq, "content does not match its hash")
        prev_hash, expected_seq, checked = record.hash, expected_seq + 1, checked + 1
    return VerifyResult(True, checked)
