"""Per-subject encryption of audit payloads, crypto-shredding on erasure, and legal holds."""

from __future__ import annotations

import pytest

from apps.accounts.services import demo_tenant_get, user_create
from apps.audit.erasure import legal_hold_place, legal_hold_release, subject_erase
from apps.audit.models import AuditRecord, SubjectKey
from apps.audit.services import PayloadUnavailableError, audit_append, audit_payload_open, audit_verify
from apps.core.errors import ApplicationError, ErrorCode

pytestmark = pytest.mark.django_db


@pytest.fixture
def person():
    return user_create(tenant=demo_tenant_get(), username="cust-7f3a", password="x", validate=False,
                       email="mira.kowalczyk@example.org")


def _turn(user, text):
    return audit_append(event="turn.completed", actor=user, tenant="demo", subject="reply-1",
                        payload={"user_message": text, "content": "Here is what I found."})


def test_a_users_payload_is_stored_encrypted_under_their_key(person):
    record = _turn(person, "My card is 4111 1111 1111 1111, I am Mira Kowalczyk")
    assert record.data_subject == f"subject:{person.pk}" and record.payload_sealed
    assert "Kowalczyk" not in record.payload_sealed and "4111" not in record.payload_sealed
    assert audit_payload_open(record=record)["user_message"].startswith("My card is 4111")
    key = SubjectKey.objects.get(subject=record.data_subject)
    assert key.wrapped_key is not None and len(bytes(key.wrapped_key)) == 12 + 32 + 16  # nonce, key, tag
    system = audit_append(event="pack.published", actor="system", tenant=None, subject="finance@1",
                          payload={"version": 1})
    assert system.data_subject == "" and system.payload_sealed == ""


def test_erasure_shreds_the_key_and_leaves_the_chain_verifying(person):
    records = [_turn(person, f"question {i} from Mira Kowalczyk") for i in range(3)]
    removed = subject_erase(user=person)
    assert "conversations.Conversation" in removed
    assert audit_verify().ok and audit_verify().checked == 4
    for record in records:
        with pytest.raises(PayloadUnavailableError):
            audit_payload_open(record=AuditRecord.objects.get(seq=record.seq))
    erased = AuditRecord.objects.order_by("-seq").first()
    assert erased.event == "subject.erased" and erased.subject == f"subject:{person.pk}"
    person.refresh_from_db()
    assert (person.username, person.email, person.is_active) == (f"erased-{person.pk}", "", False)
    assert not person.has_usable_password()
    later = _turn(person, "after erasure")  # an erased subject gets no new key, and nothing is kept
    assert later.payload_sealed == "" and SubjectKey.objects.filter(subject=later.data_subject).count() == 1


def test_a_legal_hold_blocks_erasure_until_released(person):
    _turn(person, "hello")
    hold = legal_hold_place(tenant=demo_tenant_get(), user=person, reason="SEC inquiry 2026-17",
                            actor="user:compliance")
    with pytest.raises(ApplicationError) as info:
        subject_erase(user=person)
    assert info.value.code == ErrorCode.CONFLICT
    assert audit_payload_open(record=AuditRecord.objects.get(seq=1))["user_message"] == "hello"
    legal_hold_release(hold=hold, actor="user:compliance")
    subject_erase(user=person)
    events = list(AuditRecord.objects.values_list("event", flat=True))
    assert events == ["turn.completed", "legal_hold.set", "legal_hold.released", "subject.erased"]
    assert audit_verify().ok
