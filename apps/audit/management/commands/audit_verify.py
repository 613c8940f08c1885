"""`manage.py audit_verify`: recompute the hash chain; exit 1 naming the first broken record and what happened."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit hash chain and name the first broken record."

    def handle(self, *args, **options) -> None:
        result = audit_verify()
        if not result.ok:
            raise CommandError(str(result))
        self.stdout.write(str(result))
