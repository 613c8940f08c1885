"""Helpers for the audit tests: build a realistic chain, and tamper with it the way a DBA could.

An attacker with the database owner's rights can switch the append-only trigger off; `guard_lifted()`
does that inside the current transaction (rolled back with the test), so tampering is possible at all.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

from django.db import connection

from apps.audit.services import audit_append

EVENTS = ("turn.completed", "turn.failed", "conversation.exported", "auth.login", "pack.published",
          "apikey.issued", "escalation.requested")


def raw(sql: str, params: list[Any] | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


@contextlib.contextmanager
def guard_lifted() -> Iterator[None]:
    """Switch the PostgreSQL append-only triggers off for the current transaction (owner's power)."""
    if connection.vendor != "postgresql":
        yield
        return
    raw("ALTER TABLE audit_auditrecord DISABLE TRIGGER audit_auditrecord_append_only")
    raw("ALTER TABLE audit_chainhead DISABLE TRIGGER audit_chainhead_forward_only")
    try:
        yield
    finally:
        raw("ALTER TABLE audit_auditrecord ENABLE TRIGGER audit_auditrecord_append_only")
        raw("ALTER TABLE audit_chainhead ENABLE TRIGGER audit_chainhead_forward_only")


def build_chain(n: int, *, users: list[Any] | None = None, seed: int = 7) -> list[Any]:
    """`n` records of mixed events; with `users`, turn records carry a sealed payload of theirs."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        event = EVENTS[i % len(EVENTS)]
        user = rng.choice(users) if users and event.startswith("turn.") else None
        records.append(audit_append(
            event=event, actor=user or f"user:staff{i % 3}", tenant="demo", subject=f"reply-{i}",
            payload={"i": i, "user_message": f"question {i}", "content": f"answer {rng.random():.6f}"},
            verdicts=[{"stage": "input", "rule": "size", "action": "allow", "score": 1.0}],
            model_version="smollm2/r1", pack_version="finance@1"))
    return records
