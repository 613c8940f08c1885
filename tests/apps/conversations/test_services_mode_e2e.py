"""Services mode for real: PostgreSQL, Redis, `celery -A config worker --pool threads` subprocesses and
the bundled SmolLM2 model. One turn end to end; the engine loaded once per worker process; a worker
killed with SIGKILL mid-reply and the reconciler finishing the reply once a worker is back.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from apps.accounts.services import demo_tenant_get
from apps.audit.models import AuditRecord
from apps.audit.services import audit_verify
from apps.conversations.models import Message, Outbox, Status
from apps.conversations.reconcile import replies_reconcile
from apps.conversations.services import conversation_create, turn_submit
from apps.conversations.streams import events_follow, stream_bus
from tests.conftest import manage_py, subprocess_env

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def conversation(packs, customer, real_model):
    return conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")


def test_a_turn_is_generated_streamed_stored_and_audited_by_a_celery_worker(conversation, start_worker):
    worker = start_worker("e2e")
    reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
    events = list(events_follow(str(reply.id), timeout_s=240))
    names = [name for _, name, _ in events]
    assert names[-1] == "done", names
    assert names.count("answer.delta") >= 1 and names.index("answer.delta") < names.index("done")
    reply.refresh_from_db()
    assert reply.status == Status.COMPLETE and reply.content.strip()
    assert reply.usage["completion_tokens"] <= 24 and reply.disclaimer
    assert events[-1][2]["content"] == reply.content
    record = AuditRecord.objects.get(subject=str(reply.id))
    assert record.event == "turn.completed" and record.model_version.startswith(("smollm2", "SmolLM2"))
    assert audit_verify().ok

    # Two more turns at once on the same worker (2 threads): the weights are loaded exactly once.
    more = [turn_submit(conversation=conversation_create(tenant=demo_tenant_get(), user=None, domain="finance"),
                        text=q).reply for q in ("What is a bond?", "What is an index fund?")]
    for other in more:
        assert list(events_follow(str(other.id), timeout_s=240))[-1][1] == "done"
    assert worker.log().count("loading engine profile=r1") == 1, worker.log()[-2000:]


def test_manage_py_ask_streams_an_answer_through_a_celery_worker(packs, real_model, start_worker):
    start_worker("ask")
    result = manage_py("ask", "--domain", "finance", "What is compound interest?", env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    answer = result.stdout.strip()
    assert len(answer) > 40 and "not an individual recommendation" in answer
    assert "finish=" in result.stderr
    assert Message.objects.filter(role="assistant", status=Status.COMPLETE).count() == 1


def _wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_a_worker_killed_mid_reply_leaves_it_pending_and_the_reconciler_finishes_it(conversation, start_worker):
    doomed = start_worker("doomed", VERITY_MAX_NEW_TOKENS="2000")
    reply = turn_submit(conversation=conversation,
                        text="Explain compound interest in detail, with three worked examples.").reply
    claimed = _wait(lambda: Outbox.objects.filter(reply=reply, heartbeat_at__isnull=False).first(), 180, "a claim")
    first_beat = claimed.heartbeat_at
    # A heartbeat later than the claim means tokens have been flowing for over a second: kill now.
    _wait(lambda: Outbox.objects.get(reply=reply).heartbeat_at > first_beat, 180, "tokens to flow")
    doomed.kill()
    reply.refresh_from_db()
    assert reply.status == Status.STREAMING, "the reply finished before the kill; the test proves nothing"
    seen = stream_bus().read(str(reply.id), None, 0)
    assert "done" not in [name for _, name, _ in seen]

    time.sleep(2.5)
    assert replies_reconcile(older_than_s=2) == [str(reply.id)]
    reply.refresh_from_db()
    assert reply.status == Status.PENDING and not AuditRecord.objects.filter(subject=str(reply.id)).exists()

    start_worker("rescuer")
    after = seen[-1][0] if seen else None
    rest = list(events_follow(str(reply.id), after=after, timeout_s=240))
    names = [name for _, name, _ in rest]
    assert names[0] == "retract" and names[-1] == "done"
    reply.refresh_from_db()
    # The rescuer generated anew (24 tokens here: the answer may be the no-answer note when the
    # reasoning used them all, which is still a finished reply the customer can read).
    assert reply.status == Status.COMPLETE and reply.content.strip() and reply.usage["completion_tokens"] > 0
    assert Outbox.objects.get(reply=reply).attempts == 2
    assert AuditRecord.objects.filter(subject=str(reply.id)).count() == 1
    assert reply.completed_at <= timezone.now()


def test_reconcile_command_runs_against_the_services_database(packs):
    result = manage_py("reconcile", "--older-than", "60", env=subprocess_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "0 reply(ies) re-enqueued" in result.stdout


