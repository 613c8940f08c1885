"""`manage.py apikey_create --tenant SLUG --name NAME [--domains finance,medical]`: the key is the LAST line."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.accounts.models import Tenant
from apps.apikeys.services import api_key_create
from apps.core.errors import ApplicationError


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class Command(BaseCommand):
    help = "Issue a partner API key; the plaintext key is printed once, as the last line."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug, e.g. demo")
        parser.add_argument("--name", required=True, help="a label for the key")
        parser.add_argument("--app", default=None, help="partner application name (default: the key name)")
        parser.add_argument("--domains", default="", help="comma-separated allowed domains (default: all)")
        parser.add_argument("--endpoints", default="", help="comma-separated scopes: models,chat,conversations")
        parser.add_argument("--rpm", type=int, default=60, help="requests per minute")
        parser.add_argument("--tpm", type=int, default=100_000, help="tokens per minute")
        parser.add_argument("--expires-days", type=int, default=None, help="days until the key expires")

    def handle(self, *args, **opts) -> None:
        tenant = Tenant.objects.filter(slug=opts["tenant"]).first()
        if tenant is None:
            raise CommandError(f"No tenant with slug {opts['tenant']!r}.")
        expires = None
        if opts["expires_days"] is not None:
            if opts["expires_days"] < 1:
                raise CommandError("--expires-days must be at least 1.")
            expires = timezone.now() + timedelta(days=opts["expires_days"])
        try:
            issued = api_key_create(
                tenant=tenant, name=opts["name"], app_name=opts["app"], domains=_csv(opts["domains"]),
                endpoints=_csv(opts["endpoints"]), expires_at=expires, requests_per_minute=opts["rpm"],
                tokens_per_minute=opts["tpm"], actor="cli",
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        key = issued.api_key
        self.stdout.write(f"Issued key {key.prefix} ({key.name}) for tenant {tenant.slug}, app "
                          f"{key.partner_app.name}; domains: {', '.join(key.allowed_domains) or 'all'}; "
                          f"{key.requests_per_minute} req/min, {key.tokens_per_minute} tokens/min.")
        self.stdout.write("Store it now: it is not shown again.")
        self.stdout.write(issued.plaintext)
