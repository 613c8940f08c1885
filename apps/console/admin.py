"""Django admin views of the console's tables: read-only, since every change goes through a service
(and so through the audit chain); the console pages are where people work."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.console.models import ArenaMatch, EvalRun, ReviewItem, ReviewNote


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(EvalRun)
class EvalRunAdmin(_ReadOnly):
    list_display = ("pack_version", "status", "passed", "total", "profile", "started_by", "created_at")
    list_filter = ("status", "profile")


class ReviewNoteInline(admin.TabularInline):
    model = ReviewNote
    extra = 0
    can_delete = False
    readonly_fields = ("author", "kind", "text", "created_at")

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ReviewItem)
class ReviewItemAdmin(_ReadOnly):
    list_display = ("conversation", "reason", "status", "assignee", "tenant", "created_at")
    list_filter = ("reason", "status", "tenant")
    inlines = [ReviewNoteInline]


@admin.register(ArenaMatch)
class ArenaMatchAdmin(_ReadOnly):
    list_display = ("prompt", "left_profile", "right_profile", "winner", "voted_by", "created_at")
    list_filter = ("winner",)
