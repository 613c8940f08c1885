"""`manage.py reconcile [--older-than S]`: re-enqueue replies whose generation task vanished."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.conversations.reconcile import replies_reconcile


class Command(BaseCommand):
    help = "Re-enqueue pending/streaming replies with no sign of life (their worker died or the task was lost)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=float, default=None,
                            help="seconds without a heartbeat (default VERITY_RECONCILE_AFTER_S)")

    def handle(self, *args, **options) -> None:
        requeued = replies_reconcile(older_than_s=options["older_than"])
        for reply_id in requeued:
            self.stdout.write(f"re-enqueued {reply_id}")
        self.stdout.write(f"{len(requeued)} reply(ies) re-enqueued")
