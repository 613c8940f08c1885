"""The audit viewer's reads and the audited actions around them: open, verify, export.

Records are scoped to the viewer's tenant (`AuditRecord.tenant` holds the tenant slug); records of no
tenant (pack lifecycle, system events) are visible to every tenant's auditors, since packs are shared.
A record's personal content is its payload, sealed under its data subject's key (`apps.audit.crypto`);
roles allowed to see it (`view_audit_content`: auditor, admin) get it decrypted with
`audit_payload_open`, others see the digest only. Once the subject was erased the key is gone and the
viewer says "erased". Every opening is itself recorded (HIPAA 164.312(b): activity in systems holding
health information), with whether content was shown, never the content.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet

from apps.audit.models import AuditRecord
from apps.audit.services import (
    PayloadUnavailableError,
    VerifyResult,
    audit_append,
    audit_payload_open,
    audit_verify,
)
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


# What the viewer says about a record's content: shown (decrypted), erased (key destroyed),
# digest_only (the payload held nobody's personal data and was never stored), hidden (role may not see it).
CONTENT_STATES = ("shown", "erased", "digest_only", "hidden")
# Payload keys of a turn record shown as the conversation; the rest is listed as fields.
TURN_KEYS = ("user_message", "content", "reasoning")


def audit_record_open(*, record: AuditRecord, actor: Any, tenant: Any, with_content: bool) -> dict[str, Any]:
    """The record for display; with `with_content`, its decrypted payload. The viewing is audited."""
    content, state = None, "hidden"
    if with_content:
        try:
            payload = audit_payload_open(record=record)
        except PayloadUnavailableError:
            state = "erased"
        else:
            if payload is None:
                state = "digest_only"
            else:
                state = "shown"
                content = _content(payload)
    audit_append(event="audit.viewed", actor=actor, tenant=tenant, subject=f"audit:{record.seq}",
                 payload={"seq": record.seq, "content_shown": content is not None, "content_state": state},
                 data_subject="")
    return {"record": record, "content": content, "content_state": state}


def _content(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {"turn": {}, "fields": [("payload", json.dumps(payload, ensure_ascii=False, default=str))]}
    turn = {key: str(payload.get(key) or "") for key in TURN_KEYS if key in payload}
    fields = [(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True,
                                                                    default=str))
              for key, value in sorted(payload.items()) if key not in TURN_KEYS]
    return {"turn": turn, "fields": fields}


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
