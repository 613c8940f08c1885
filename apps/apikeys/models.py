"""Partner applications within a tenant, and their API keys (only a keyed hash of each secret is stored).

A key reads `vk_<prefix>_<secret>`. The prefix is public: it identifies the key in lists, logs and the
`apikey_revoke` command, and it is the indexed lookup column, so a random key costs one indexed miss.
The secret is never stored; `secret_hash` is HMAC-SHA256 of the whole key under a server-side pepper.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.core.models import BaseModel

# Scopes a key may be limited to (empty list = all of them).
ENDPOINT_SCOPES = ("models", "chat", "conversations")


class PartnerApp(BaseModel):
    """One integrating system of a tenant (a bank's mobile app, a clinic's portal)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="partner_apps")
    name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ("tenant", "name")
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="partnerapp_unique_name")]

    def __str__(self) -> str:
        return f"{self.tenant_id}/{self.name}"


class ApiKey(BaseModel):
    partner_app = models.ForeignKey(PartnerApp, on_delete=models.CASCADE, related_name="api_keys")
    # Denormalised from partner_app so that every tenant filter is one column away from the key.
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    allowed_domains = models.JSONField(default=list, blank=True)  # [] = every published domain
    allowed_endpoints = models.JSONField(default=list, blank=True)  # [] = every scope in ENDPOINT_SCOPES
    requests_per_minute = models.PositiveIntegerField(default=60)
    tokens_per_minute = models.PositiveIntegerField(default=100_000)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"vk_{self.prefix}_… ({self.name})"

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    def allows_domain(self, domain: str) -> bool:
        return not self.allowed_domains or domain in self.allowed_domains

    def allows_endpoint(self, scope: str) -> bool:
        return not self.allowed_endpoints or scope in self.allowed_endpoints


class UsageRecord(models.Model):
    """The token ledger: one row per completed generation billed to a key (quotas and invoices read it)."""

    id = models.BigAutoField(primary_key=True)
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    reply_id = models.UUIDField(unique=True)  # one row per reply, however often a client retries
    model = models.CharField(max_length=64)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.model} {self.prompt_tokens}+{self.completion_tokens}"
