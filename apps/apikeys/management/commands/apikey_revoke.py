"""`manage.py apikey_revoke PREFIX`: revoke a key; its next request is refused with 401."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.apikeys.services import api_key_revoke
from apps.core.errors import ApplicationError


class Command(BaseCommand):
    help = "Revoke the partner API key with the given prefix (the part after vk_)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args, **opts) -> None:
        try:
            key = api_key_revoke(prefix=opts["prefix"], actor="cli")
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Revoked key {key.prefix} ({key.name}) at {key.revoked_at.isoformat()}.")
