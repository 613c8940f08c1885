"""Audit services: append a record to the hash chain, open a sealed payload, manage subject keys.

Appends are serialised (a PostgreSQL advisory lock; SQLite's IMMEDIATE transactions serialise writers
already) so that two workers never link to the same previous record; the chain head moves in the same
transaction. A payload that holds a person's data is stored encrypted under that person's key (see
apps/audit/crypto.py); by default the data subject is the acting user. Verification lives in
apps/audit/verify.py, erasure and legal holds in apps/audit/erasure.py.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from apps.audit.crypto import (
    PayloadUnavailableError,
    keyed_digest,
    new_subject_key,
    payload_decrypt,
    payload_digest,
    payload_encrypt,
    record_hash,
    record_seal,
    unwrap_subject_key,
)
from apps.audit.events import audit_event_check
from apps.audit.models import AuditRecord, ChainHead, SubjectKey
from apps.audit.verify import GENESIS_HASH, VerifyResult, audit_verify

__all__ = ["GENESIS_HASH", "PayloadUnavailableError", "VerifyResult", "audit_append", "audit_payload_open",
           "audit_verify", "payload_digest", "record_hash", "subject_ref"]

_LOCK_KEY = 0x7665726974790001  # "verity" + 1: the advisory lock id of the audit chain


def subject_ref(user: Any) -> str:
    """The pseudonymous reference of a data subject in the chain: `subject:<user pk>`."""
    return f"subject:{user.pk}"


def _is_user(value: Any) -> bool:
    return not isinstance(value, str) and hasattr(value, "username") and getattr(value, "pk", None) is not None


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
    return json.loads(json.dumps(out, sort_keys=True, default=str))  # the stored JSON hashes identically


def _subject_key(subject: str) -> bytes | None:
    """The subject's key, created on first use; None once the subject was erased."""
    row = SubjectKey.objects.filter(subject=subject).first()
    if row is None:
        key, wrapped = new_subject_key()
        SubjectKey.objects.create(subject=subject, wrapped_key=wrapped)
        return key
    if row.wrapped_key is None:
        return None
    return unwrap_subject_key(row.wrapped_key)


def _seal_payload(subject: str, payload: Any) -> tuple[str, str]:
    """(payload_digest, payload_sealed) for a subject's payload."""
    key = _subject_key(subject)
    if key is None:  # erased: nothing of the payload is kept, and the digest links to nothing
        return keyed_digest(os.urandom(32), payload), ""
    return keyed_digest(key, payload), payload_encrypt(key, subject, payload)


def audit_append(*, event: str, actor: Any, tenant: Any, subject: Any, payload: Any,
                 verdicts: Any = (), model_version: str = "", pack_version: Any = None,
                 data_subject: Any = None) -> AuditRecord:
    """Append one record linked to the previous one; returns the stored record.

    `data_subject`: the user whose personal data `payload` holds (default: `actor` when it is a user);
    pass "" for a payload that holds nobody's personal data, which is then kept as a digest only.
    """
    audit_event_check(event)
    if data_subject is None:
        data_subject = actor if _is_user(actor) else ""
    ref = subject_ref(data_subject) if _is_user(data_subject) else str(data_subject or "")
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        if ref:
            digest, sealed = _seal_payload(ref, payload)
        else:
            digest, sealed = payload_digest(payload), ""
        last = AuditRecord.objects.order_by("-seq").values("seq", "hash").first()
        record = AuditRecord(
            seq=(last["seq"] + 1) if last else 1,
            created_at=timezone.now(),
            event=event,
            actor=_label(actor) or "system",
            tenant=_label(tenant),
            subject=_label(subject),
            payload_digest=digest,
            verdicts=_verdict_dicts(verdicts),
            model_version=str(model_version or "")[:200],
            pack_version=_label(pack_version)[:100],
            data_subject=ref,
            payload_sealed=sealed,
            prev_hash=last["hash"] if last else GENESIS_HASH,
        )
        record.hash = record_hash(record)
        record.seal = record_seal(record.hash)
        record.save()
        ChainHead.objects.update_or_create(id=1, defaults={"seq": record.seq, "hash": record.hash})
    return record


def audit_payload_open(*, record: AuditRecord) -> Any:
    """The decrypted payload of a record; None when only a digest was kept.

    Raises PayloadUnavailableError when the subject was erased (the key is gone) or the ciphertext was altered.
    """
    if not record.payload_sealed:
        return None
    row = SubjectKey.objects.filter(subject=record.data_subject).first()
    if row is None or row.wrapped_key is None:
        raise PayloadUnavailableError(f"the key of {record.data_subject} was destroyed (erasure)")
    return payload_decrypt(unwrap_subject_key(row.wrapped_key), record.data_subject, record.payload_sealed)
