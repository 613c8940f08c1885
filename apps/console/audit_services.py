"""The audit viewer's reads and the audited actions around them: open, verify, export.

Records are scoped to the viewer's tenant (`AuditRecord.tenant` holds the tenant slug); records of no
tenant (pack lifecycle, system events) are visible to every tenant's auditors, since packs are shared.
The content behind a turn record is read from the stored reply for roles allowed to see it, and the
viewing is itself recorded (HIPAA 164.312(b): activity in systems holding health information).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet

from apps.audit.models import AuditRecord
from apps.audit.services import VerifyResult, audit_append, audit_verify
from apps.conversations.models import Message
from apps.core.errors import ApplicationError, ErrorCode

PAGE_SIZE = 50


def audit_records(*, tenant: Any, q: str = "", event: str = "", actor: str = "") -> QuerySet[AuditRecord]:
    records = AuditRecord.objects.filter(Q(tenant=tenant.slug) | Q(tenant=""))
    if event:
        records = records.filter(event=event)
    if actor:
        records = records.filter(actor__icontains=actor)
    if q:
        search = Q(subject__icontains=q) | Q(hash__startswith=q.lower()) | Q(pack_version__icontains=q)
        if q.isdigit():
            search |= Q(seq=int(q))
        records = records.filter(search)
    return records.order_by("-seq")


def audit_record_get(*, tenant: Any, seq: Any) -> AuditRecord:
    try:
        return audit_records(tenant=tenant).get(seq=int(seq))
    except (AuditRecord.DoesNotExist, ValueError, TypeError) as exc:
        raise ApplicationError(ErrorCode.NOT_FOUND, f"Audit record {seq} does not exist.") from exc


def audit_record_open(*, record: AuditRecord, actor: Any, tenant: Any, with_content: bool) -> dict[str, Any]:
    """The record for display; with `with_content`, also the reply it covers. The viewing is audited."""
    content = None
    if with_content and record.event.startswith("turn."):
        message = Message.objects.filter(pk=_uuid_or_none(record.subject)).select_related("reply_to").first()
        if message is not None:
            content = {"user_message": message.reply_to.content if message.reply_to else "",
                       "answer": message.content, "reasoning": message.reasoning}
    audit_append(event="audit.viewed", actor=actor, tenant=tenant, subject=f"audit:{record.seq}",
                 payload={"seq": record.seq, "content_shown": content is not None})
    return {"record": record, "content": content}


def _uuid_or_none(value: str) -> str | None:
    import uuid

    try:
        return str(uuid.UUID(value))
    except (ValueError, TypeError, AttributeError):
        return None


def audit_chain_verify(*, actor: Any, tenant: Any) -> VerifyResult:
    result = audit_verify()
    audit_append(event="audit.verified", actor=actor, tenant=tenant, subject="audit:chain",
                 payload={"ok": result.ok, "checked": result.checked, "broken_seq": result.broken_seq})
    return result


def record_dict(record: AuditRecord) -> dict[str, Any]:
    return {"seq": record.seq, "created_at": record.created_at.isoformat(), "event": record.event,
            "actor": record.actor, "tenant": record.tenant, "subject": record.subject,
            "payload_digest": record.payload_digest, "verdicts": record.verdicts,
            "model_version": record.model_version, "pack_version": record.pack_version,
            "prev_hash": record.prev_hash, "hash": record.hash}


def audit_export(*, records: QuerySet[AuditRecord], actor: Any, tenant: Any) -> Iterator[str]:
    """JSON lines, oldest first; the export is recorded before any line leaves."""
    records = records.order_by("seq")
    audit_append(event="audit.exported", actor=actor, tenant=tenant, subject="audit:export",
                 payload={"count": records.count()})
    return (json.dumps(record_dict(record), sort_keys=True) + "\n" for record in records.iterator(chunk_size=500))
