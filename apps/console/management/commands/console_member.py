"""`manage.py console_member USERNAME ROLE [--tenant demo] [--password ...]`: give a user a console role.

The accounts app's sign-up knows customers and experts; approvers, auditors and admins are named by
an operator with this command (creating the user when it does not exist).
"""

from __future__ import annotations

import secrets

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.accounts.models import Membership, Tenant, User
from apps.console.roles import ROLES


class Command(BaseCommand):
    help = "Create or update a user's console role in a tenant."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=ROLES)
        parser.add_argument("--tenant", default="demo", help="tenant slug (default: demo)")
        parser.add_argument("--password", help="set this password (a new user gets a random one otherwise)")

    @transaction.atomic
    def handle(self, *args, username: str, role: str, tenant: str, password: str | None, **options) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant with slug {tenant!r}.")
        user = User.objects.filter(username=username).first()
        secret = password
        if user is None:
            secret = password or secrets.token_urlsafe(12)
            user = User.objects.create_user(username=username, password=secret, default_tenant=found)
        elif password:
            user.set_password(password)
            user.save(update_fields=["password"])
        Membership.objects.update_or_create(tenant=found, user=user, defaults={"role": role})
        line = f"{username}: {role} in {tenant}"
        self.stdout.write(line + (f"  password: {secret}" if secret else ""))
