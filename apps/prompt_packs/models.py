"""Pack versions: one row per version of a domain's prompt pack, with its lifecycle and approvals.

A pack version is immutable content (`data`, fingerprinted by `digest`) plus a lifecycle
(draft -> approved -> published -> archived). Conversations pin the version they started with, so a
published version is never edited in place: a change is always a new version. State changes go
through `apps.prompt_packs.services`; this module only describes the row and reads its content.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


class PackStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    APPROVED = "approved", "Approved"
    PUBLISHED = "published", "Published"
    ARCHIVED = "archived", "Archived"


class PackVersion(models.Model):
    """One version of one domain's pack; `data` is the validated pack (see `schema.pack_validate`)."""

    domain = models.SlugField(max_length=32, db_index=True)
    version = models.PositiveIntegerField(help_text="Sequence number, per domain, starting at 1.")
    label = models.CharField(max_length=64, blank=True, help_text="The pack's own version label.")
    status = models.CharField(max_length=16, choices=PackStatus.choices, default=PackStatus.DRAFT)
    data = models.JSONField()
    digest = models.CharField(max_length=64, help_text="sha256 of the canonical JSON of `data`.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pack_versions_created",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="pack_versions_approved",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "version"], name="pack_version_unique_per_domain"),
            # Exactly one version answers a new conversation; two published rows would make that
            # choice arbitrary, so the database refuses it even if a service is buggy.
            models.UniqueConstraint(
                fields=["domain"],
                condition=Q(status="published"),
                name="pack_version_one_published_per_domain",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.domain} v{self.version} ({self.status})"

    # Read-only views of the content: callers never dig into `data` by hand, so the pack format can
    # evolve behind these properties.

    @property
    def title(self) -> str:
        return str(self.data.get("title", self.domain))

    @property
    def description(self) -> str:
        return str(self.data.get("description", ""))

    @property
    def disclaimer(self) -> str:
        return str(self.data.get("disclaimer", "")).strip()

    @property
    def sampling(self) -> dict[str, Any]:
        return dict(self.data.get("sampling", {}))

    @property
    def instructions(self) -> str:
        return str(self.data.get("instructions", "")).strip()

    @property
    def risk_controls(self) -> list[str]:
        return [str(item).strip() for item in self.data.get("risk_controls", [])]

    @property
    def risk_rules(self) -> list[dict[str, Any]]:
        return [dict(rule) for rule in self.data.get("risk_rules", [])]

    @property
    def refusals(self) -> dict[str, str]:
        """Named refusal texts; `"default"` is always present in a valid pack."""
        return {key: str(text).strip() for key, text in self.data.get("refusal", {}).items()}

    @property
    def refusal(self) -> str:
        return self.refusals.get("default", "")

    @property
    def escalation(self) -> dict[str, str]:
        return {key: str(text).strip() for key, text in self.data.get("escalation", {}).items()}

    @property
    def evals(self) -> list[dict[str, Any]]:
        return [dict(case) for case in self.data.get("evals", [])]


class PackCanary(models.Model):
    """A canary share: `percent` of a domain's NEW conversations start on `version`, an approved candidate.

    At most one per domain. Conversations keep the version they started with, so ending the share (or
    publishing) changes nothing for conversations already running. Written by `services.pack_canary_set`.
    """

    domain = models.SlugField(max_length=32, unique=True)
    version = models.ForeignKey(PackVersion, on_delete=models.CASCADE, related_name="+")
    percent = models.PositiveSmallIntegerField(help_text="Share of new conversations, 1-99 %.")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"canary {self.domain}: {self.percent}% on v{self.version.version}"
