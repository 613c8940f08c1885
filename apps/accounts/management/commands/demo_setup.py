"""`manage.py demo_setup [--password P]`: the demo tenant, a demo customer and a demo expert, credentials printed."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from apps.accounts.services import demo_setup


class Command(BaseCommand):
    help = "Create (or refresh) the demo tenant 'demo' with a demo customer and a demo expert."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", help="use this password for both users instead of a random one")

    def handle(self, *args, **options) -> None:
        for cred in demo_setup(password=options.get("password")):
            verb = "created" if cred.created else "password reset"
            self.stdout.write(f"{cred.role:<9} username: {cred.username}  password: {cred.password}  ({verb})")
