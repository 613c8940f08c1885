"""Erasing a data subject after a real turn: the chain still verifies and no table holds their data.

The turn goes through the real services (turn_submit, the safety pipeline, reply_generate, the audit
append) on PostgreSQL; only the model is the stand-in engine (the engine is not the subject here), and
it is made to echo the customer's personal data back, the worst case for erasure. Afterwards every
row of every table is scanned as text for each of the subject's strings.
"""

from __future__ import annotations

import pytest
from django.db import connection

from apps.accounts.services import demo_tenant_get, user_create
from apps.audit.erasure import subject_erase
from apps.audit.models import AuditRecord
from apps.audit.services import audit_payload_open, audit_verify
from apps.conversations.actions import feedback_submit, handoff_request
from apps.conversations.models import Conversation, Message
from apps.conversations.services import conversation_create, reply_generate, turn_submit
from apps.conversations.streams import stream_bus

pytestmark = pytest.mark.django_db

NAME, SURNAME = "Mirabel", "Kowalczykowa"
EMAIL = "mirabel.kowalczykowa@example.org"
CARD = "4539 1488 0343 6467"
PHONE = "(415) 555-0142"
STORY = "inheritance from my great-aunt Zofia in Gdansk"
NEEDLES = (NAME, SURNAME, EMAIL, CARD, CARD.replace(" ", ""), PHONE, STORY)


def _tables_holding(needle: str) -> list[str]:
    """Every table (public schema) with a row whose text form contains `needle`."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        tables = [row[0] for row in cursor.fetchall()]
        found = []
        for table in tables:
            cursor.execute(f'SELECT 1 FROM "{table}" AS t WHERE t::text LIKE %s LIMIT 1', [f"%{needle}%"])
            if cursor.fetchone():
                found.append(table)
    return found


@pytest.mark.skipif(connection.vendor != "postgresql", reason="scans PostgreSQL's tables")
def test_erasure_after_a_turn_leaves_no_plaintext_and_a_verifying_chain(packs, fake_engine,
                                                                        django_capture_on_commit_callbacks):
    tenant = demo_tenant_get()
    person = user_create(tenant=tenant, username="cust-5c21", password="x", validate=False, email=EMAIL)
    person.first_name, person.last_name = NAME, SURNAME
    person.save()
    other = user_create(tenant=tenant, username="cust-other", password="x", validate=False)
    fake_engine.answer = f"Noted, {NAME} {SURNAME}: we will call {PHONE} about the {STORY}. "
    conversation = conversation_create(tenant=tenant, user=person, domain="finance")
    text = f"I am {NAME} {SURNAME} ({EMAIL}, {PHONE}), card {CARD}. How is an {STORY} taxed?"
    reply = reply_generate(reply_id=str(turn_submit(conversation=conversation, text=text).reply.id))
    feedback_submit(message=reply, user=person, rating="down", reason=f"{NAME} says: wrong about {STORY}")
    handoff_request(conversation=conversation, user=person, reason=f"call me on {PHONE}")
    fake_engine.answer = "Compound interest is interest on interest. "
    kept = conversation_create(tenant=tenant, user=other, domain="finance")
    kept_reply = turn_submit(conversation=kept, text="What is compound interest?").reply
    reply_generate(reply_id=str(kept_reply.id))
    bus = stream_bus()
    streamed = "".join(d.get("text", "") for _, _, d in bus.read(str(reply.id), None, 0))
    assert STORY in streamed  # the reply's live stream holds the echoed story until it expires

    before = {needle: _tables_holding(needle) for needle in NEEDLES}
    assert "conversations_message" in before[STORY] and "accounts_user" in before[EMAIL]
    sealed = AuditRecord.objects.get(event="turn.completed", subject=str(reply.id))
    assert STORY in audit_payload_open(record=sealed)["user_message"]  # the record keeps it, encrypted

    with django_capture_on_commit_callbacks(execute=True):
        removed = subject_erase(user=person)

    after = {needle: _tables_holding(needle) for needle in NEEDLES}
    assert after == {needle: [] for needle in NEEDLES}, after
    assert removed["conversations.Conversation"] >= 3  # the conversation, its two messages, ...
    # The live streams go too (Redis in services mode): the reply's and the conversation's own.
    assert removed["conversations.streams"] == 2
    assert bus.read(str(reply.id), None, 0) == []
    assert bus.read(str(kept_reply.id), None, 0) != []  # someone else's stream is untouched
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert Message.objects.filter(conversation=kept).count() == 2  # someone else's data is untouched
    result = audit_verify()
    assert result.ok, result
    assert AuditRecord.objects.filter(subject=str(reply.id), event="turn.completed").exists()
    assert AuditRecord.objects.order_by("-seq").first().event == "subject.erased"
