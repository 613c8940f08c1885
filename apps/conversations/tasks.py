"""Celery tasks (services mode). They take ids, never objects, and are idempotent.

`generate_reply` is acknowledged late: a worker that dies mid-task leaves the message unacknowledged
and the reply `streaming` in the database, where the reconciler finds it.
"""

from __future__ import annotations

from celery import shared_task

from apps.conversations.reconcile import replies_reconcile
from apps.conversations.services import reply_generate


@shared_task(name="apps.conversations.tasks.generate_reply", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True)
def generate_reply(reply_id: str) -> None:
    reply_generate(reply_id=reply_id)


@shared_task(name="apps.conversations.tasks.reconcile_replies", ignore_result=True)
def reconcile_replies() -> int:
    return len(replies_reconcile())
