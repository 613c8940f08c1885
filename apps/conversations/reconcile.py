"""The reconciler: find replies whose generation task vanished and put them back in the queue.

PostgreSQL is the source of truth, not the broker. A reply still `pending` or `streaming` whose outbox
shows no sign of life (no heartbeat, or an old one) for VERITY_RECONCILE_AFTER_S seconds has lost its
task: a worker was killed mid-reply, or Redis lost the queued message. It goes back to `pending`, its
claim is cleared (a zombie worker then loses the claim and stops) and it is enqueued again; the next
worker regenerates it from scratch. Runs as a Celery beat task, `manage.py reconcile`, and periodically
inside the embedded worker thread.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.conversations.models import Message, Outbox, Status

logger = logging.getLogger(__name__)


def replies_stale(*, older_than_s: float) -> list[str]:
    """Ids of unfinished replies with no sign of life for `older_than_s` seconds (selector)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_s)
    last_sign = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, enqueued_at__lt=cutoff) | Q(
        heartbeat_at__isnull=True, enqueued_at__isnull=True)
    rows = (Outbox.objects.filter(done_at__isnull=True, reply__status__in=[Status.PENDING, Status.STREAMING])
            .filter(last_sign).values_list("reply_id", flat=True))
    return [str(reply_id) for reply_id in rows]


def replies_reconcile(*, older_than_s: float | None = None) -> list[str]:
    """Re-enqueue every stale reply; returns their ids. Safe to run concurrently and repeatedly."""
    from apps.conversations.dispatch import reply_enqueue

    threshold = settings.VERITY_RECONCILE_AFTER_S if older_than_s is None else older_than_s
    requeued: list[str] = []
    for reply_id in replies_stale(older_than_s=threshold):
        with transaction.atomic():
            cutoff = timezone.now() - timezone.timedelta(seconds=threshold)
            outbox = Outbox.objects.select_for_update().filter(reply_id=reply_id, done_at__isnull=True).first()
            if outbox is None:
                continue
            last_sign = outbox.heartbeat_at or outbox.enqueued_at
            if last_sign is not None and last_sign >= cutoff:
                continue  # came back to life between the scan and the lock
            outbox.claimed_by, outbox.heartbeat_at, outbox.enqueued_at = "", None, timezone.now()
            outbox.reconciled += 1
            outbox.save(update_fields=["claimed_by", "heartbeat_at", "enqueued_at", "reconciled", "updated_at"])
            Message.objects.filter(pk=reply_id).update(status=Status.PENDING, updated_at=timezone.now())
            transaction.on_commit(lambda rid=reply_id: reply_enqueue(rid))
        requeued.append(reply_id)
        logger.warning("reconciler re-enqueued reply %s (no sign of life for %ss)", reply_id, threshold)
    return requeued
