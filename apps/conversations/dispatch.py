"""How a reply reaches a worker: the Celery task in services mode, an in-process thread in embedded mode.

`reply_enqueue(reply_id)` is always called through `transaction.on_commit`, so a worker never looks
for a reply that is not committed yet. A failure to reach the broker is logged, not raised: the reply
and its outbox row are already stored, and the reconciler enqueues it again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def reply_enqueue(reply_id: str) -> None:
    if settings.VERITY_MODE == "services":
        from apps.conversations.tasks import generate_reply

        try:
            generate_reply.apply_async(args=[str(reply_id)], queue=settings.CELERY_TASK_DEFAULT_QUEUE)
        except Exception:
            logger.exception("could not enqueue reply %s; the reconciler will retry", reply_id)
        return
    embedded_worker_start().submit(str(reply_id))


class EmbeddedWorker:
    """One daemon thread that generates replies in order and reconciles stale ones now and then."""

    def __init__(self, reconcile_every_s: float) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        self._reconcile_every_s = reconcile_every_s
        self._thread = threading.Thread(target=self._run, name="verity-embedded-worker", daemon=True)
        self.processed = 0

    def start(self) -> EmbeddedWorker:
        self._thread.start()
        return self

    def submit(self, reply_id: str) -> None:
        self._queue.put(reply_id)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        from apps.conversations.reconcile import replies_reconcile
        from apps.conversations.services import reply_generate

        # Replies left unfinished by a previous process (it was stopped mid-reply) are picked up now.
        self._safely(replies_reconcile)
        next_reconcile = time.monotonic() + self._reconcile_every_s
        while True:
            try:
                reply_id = self._queue.get(timeout=1.0)
            except queue.Empty:
                reply_id = None
            if reply_id is not None:
                self._safely(lambda rid=reply_id: reply_generate(reply_id=rid))
                self.processed += 1
                self._queue.task_done()
            if time.monotonic() >= next_reconcile:
                self._safely(replies_reconcile)
                next_reconcile = time.monotonic() + self._reconcile_every_s

    @staticmethod
    def _safely(job) -> None:
        close_old_connections()
        try:
            job()
        except Exception:  # the thread must survive any one reply
            logger.exception("embedded worker job failed")
        finally:
            close_old_connections()


_worker: EmbeddedWorker | None = None
_worker_lock = threading.Lock()


def embedded_worker_start() -> EmbeddedWorker | None:
    """Start the embedded worker thread once per process (no-op in services mode)."""
    global _worker
    if settings.VERITY_MODE != "embedded":
        return None
    with _worker_lock:
        if _worker is None:
            every = max(5.0, settings.VERITY_RECONCILE_AFTER_S / 2)
            _worker = EmbeddedWorker(reconcile_every_s=every).start()
    return _worker
