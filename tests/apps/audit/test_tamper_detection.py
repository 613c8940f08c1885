"""Issue 6, check 4: 1,000 random tamperings of a real chain on PostgreSQL are all detected and located.

One chain of a few hundred records (sealed payloads of two data subjects among them) is built once;
each tampering (edit a field, delete a record, swap two records, insert a forged record) runs inside a
savepoint that is rolled back, with the append-only trigger lifted as a database owner could. The
verify must name the exact first bad position, the record there (by its stored hash) and the kind.
"""

from __future__ import annotations

import collections
import random
import secrets
from typing import Any

import pytest
from django.db import connection, transaction

from apps.accounts.services import demo_tenant_get, user_create
from apps.audit.crypto import record_hash
from apps.audit.models import AuditRecord
from apps.audit.services import audit_verify
from tests.apps.audit._chain import build_chain, guard_lifted, raw

pytestmark = pytest.mark.django_db

CHAIN_LENGTH = 240
TAMPERINGS = 1000
EDITABLE = {  # column -> how to change it (the new value always differs from the old)
    "created_at": ("created_at + interval '1 second'", []),
    "event": ("%s", ["auth.login.forged"]),
    "actor": ("%s", ["user:mallory"]),
    "tenant": ("%s", ["other-bank"]),
    "subject": ("subject || 'x'", []),
    "payload_digest": ("%s", ["0" * 64]),
    "verdicts": ("%s::jsonb", ['[{"stage": "input", "rule": "none", "action": "allow", "score": 0.0}]']),
    "model_version": ("model_version || '-patched'", []),
    "pack_version": ("%s", ["finance@99"]),
    "data_subject": ("data_subject || 'x'", []),
    "payload_sealed": ("payload_sealed || 'AAAA'", []),
    "prev_hash": ("md5(prev_hash) || md5(prev_hash)", []),
    "hash": ("md5(hash) || md5(hash)", []),
    "seal": ("md5(seal) || md5(seal)", []),
}


class _RollbackError(Exception):
    pass


def _stored_hash(seq: int) -> str:
    rows = raw("SELECT hash FROM audit_auditrecord WHERE seq = %s", [seq])
    return rows[0][0] if rows else ""


def _insert(record: AuditRecord) -> None:
    columns = [f.column for f in AuditRecord._meta.fields]
    values = [f.get_db_prep_save(getattr(record, f.attname), connection) for f in AuditRecord._meta.fields]
    raw(f"INSERT INTO audit_auditrecord ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
        values)


def _forged_at(seq: int, prev: AuditRecord, template: AuditRecord) -> AuditRecord:
    """A record a forger would write: plausible fields, correct link and hash, but no server key."""
    forged = AuditRecord(**{f.attname: getattr(template, f.attname) for f in AuditRecord._meta.fields})
    forged.seq, forged.prev_hash, forged.actor = seq, prev.hash, "user:mallory"
    forged.subject = f"forged-{secrets.token_hex(4)}"
    forged.hash = record_hash(forged)
    forged.seal = template.seal  # the best a forger can do: reuse a real seal
    return forged


def _tamper(kind: str, rng: random.Random, chain: list[AuditRecord]) -> tuple[int, str, str]:
    """Apply one tampering; return (expected seq, expected kind, expected hash of the record there)."""
    n = len(chain)
    if kind == "edit":
        seq, column = rng.randint(1, n), rng.choice(sorted(EDITABLE))
        expression, params = EDITABLE[column]
        raw(f"UPDATE audit_auditrecord SET {column} = {expression} WHERE seq = %s", [*params, seq])
        return seq, ("forged" if column in ("hash", "seal") else "edited"), _stored_hash(seq)
    if kind == "delete":
        seq = rng.randint(1, n)
        raw("DELETE FROM audit_auditrecord WHERE seq = %s", [seq])
        return seq, "missing", ""
    if kind == "reorder":
        first, second = sorted(rng.sample(range(1, n + 1), 2))
        raw("UPDATE audit_auditrecord SET seq = -1 WHERE seq = %s", [first])
        raw("UPDATE audit_auditrecord SET seq = %s WHERE seq = %s", [first, second])
        raw("UPDATE audit_auditrecord SET seq = %s WHERE seq = -1", [second])
        return first, "moved", chain[second - 1].hash
    seq = rng.randint(1, n + 1)  # insert a forged record at seq, renumbering the ones after it
    raw("UPDATE audit_auditrecord SET seq = -seq WHERE seq >= %s", [seq])
    raw("UPDATE audit_auditrecord SET seq = 1 - seq WHERE seq < 0")
    prev = chain[seq - 2] if seq > 1 else AuditRecord(hash="0" * 64)
    forged = _forged_at(seq, prev, rng.choice(chain))
    _insert(forged)
    return seq, "forged", forged.hash


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the tampering drill runs on PostgreSQL")
def test_a_thousand_random_tamperings_are_all_detected_and_located():
    tenant = demo_tenant_get()
    users: list[Any] = [user_create(tenant=tenant, username=f"drill-{i}", password="x", validate=False)
                        for i in range(2)]
    chain = build_chain(CHAIN_LENGTH, users=users)
    assert sum(1 for r in chain if r.payload_sealed) > 20  # sealed payloads are part of the drill
    assert audit_verify().ok
    rng = random.Random(20261128)
    tally: collections.Counter[str] = collections.Counter()
    failures = []
    with guard_lifted():
        for attempt in range(TAMPERINGS):
            kind = rng.choice(("edit", "delete", "reorder", "insert"))
            try:
                with transaction.atomic():
                    expected = _tamper(kind, rng, chain)
                    result = audit_verify()
                    located = (result.broken_seq, result.kind, result.record_hash)
                    if result.ok or located != expected:
                        failures.append((attempt, kind, expected, str(result)))
                    raise _RollbackError
            except _RollbackError:
                pass
            tally[kind] += 1
    assert audit_verify().ok  # every tampering was rolled back
    print(f"\ntamperings: {dict(tally)}; detected and located: {TAMPERINGS - len(failures)}/{TAMPERINGS}")
    assert not failures, failures[:10]
