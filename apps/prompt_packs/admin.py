"""Django admin for pack versions: read-only; state changes go through the services (and the console)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from apps.prompt_packs.models import PackVersion


@admin.register(PackVersion)
class PackVersionAdmin(admin.ModelAdmin):
    list_display = (
        "domain",
        "version",
        "label",
        "status",
        "created_by",
        "approved_by",
        "published_at",
        "short_digest",
    )
    list_filter = ("domain", "status")
    search_fields = ("domain", "label", "digest")
    ordering = ("domain", "-version")
    fields = (
        "domain",
        "version",
        "label",
        "status",
        "digest",
        "created_by",
        "created_at",
        "approved_by",
        "approved_at",
        "published_at",
        "archived_at",
        "pretty_data",
    )
    readonly_fields = fields

    # A pack version is a supervised communication (FINRA 3110/2210): editing or deleting one here
    # would bypass the four-eyes lifecycle, so the admin only shows them.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PackVersion | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: PackVersion | None = None) -> bool:
        return False

    @admin.display(description="digest")
    def short_digest(self, obj: PackVersion) -> str:
        return obj.digest[:12]

    @admin.display(description="content")
    def pretty_data(self, obj: PackVersion) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.data, indent=2, ensure_ascii=False))
