"""Celery wiring and dispatch: task options that make a lost worker recoverable, the beat schedule of
the reconciler, and enqueueing that never fails a turn when the broker is down."""

from __future__ import annotations

import pytest
from django.conf import settings

from apps.accounts.services import demo_tenant_get
from apps.conversations.dispatch import reply_enqueue
from apps.conversations.models import Outbox, Status
from apps.conversations.reconcile import replies_stale
from apps.conversations.services import conversation_create, turn_submit
from apps.conversations.tasks import generate_reply, reconcile_replies
from config.celery import app


def test_generate_reply_is_acked_late_and_requeued_when_its_worker_is_lost():
    assert generate_reply.acks_late is True and generate_reply.reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1  # a dying worker holds at most the task it runs


def test_beat_runs_the_reconciler_task():
    schedule = settings.CELERY_BEAT_SCHEDULE["reconcile-replies"]
    assert schedule["task"] == reconcile_replies.name
    assert app.conf.beat_schedule["reconcile-replies"]["task"] in app.tasks


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_does_not_fail_the_turn_and_the_reconciler_finds_it(packs, customer, caplog, monkeypatch):
    from kombu.exceptions import OperationalError

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    # The publish fails the way kombu reports a refused connection (a live pool cannot be unplugged here).
    monkeypatch.setattr(generate_reply, "apply_async", broker_down)
    conversation = conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")
    reply = turn_submit(conversation=conversation, text="What is an annuity?").reply
    assert f"could not enqueue reply {reply.id}" in caplog.text
    reply.refresh_from_db()
    assert reply.status == Status.PENDING and Outbox.objects.filter(reply=reply).exists()
    assert str(reply.id) in replies_stale(older_than_s=0)
    monkeypatch.undo()
    reply_enqueue(str(reply.id))  # the broker is back: enqueueing works again
