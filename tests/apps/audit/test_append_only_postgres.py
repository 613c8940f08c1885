"""On PostgreSQL the database refuses UPDATE and DELETE of audit rows through the app's own connection,
and the chain head only moves forward; appends still work."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from apps.audit.models import ChainHead
from apps.audit.services import audit_verify
from tests.apps.audit._chain import build_chain, raw

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(connection.vendor != "postgresql", reason="the guard is PostgreSQL's")]


@pytest.mark.parametrize("sql", [
    "UPDATE audit_auditrecord SET actor = 'user:mallory' WHERE seq = 2",
    "UPDATE audit_auditrecord SET seal = ''",
    "DELETE FROM audit_auditrecord WHERE seq = 3",
    "DELETE FROM audit_auditrecord",
])
def test_update_and_delete_of_audit_rows_fail(sql):
    build_chain(3)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw(sql)
    assert audit_verify().ok and audit_verify().checked == 3


@pytest.mark.parametrize("sql", ["UPDATE audit_chainhead SET seq = seq - 1", "DELETE FROM audit_chainhead"])
def test_the_chain_head_cannot_be_moved_back_or_removed(sql):
    build_chain(3)
    with pytest.raises(DatabaseError, match="head"), transaction.atomic():
        raw(sql)
    assert ChainHead.objects.get().seq == 3


def test_the_guard_is_installed_as_triggers():
    names = {row[0] for row in raw("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")}
    assert {"audit_auditrecord_append_only", "audit_chainhead_forward_only"} <= names
