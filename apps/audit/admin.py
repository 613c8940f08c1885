"""Read-only admin for audit records (the console's audit view builds on it)."""

from django.contrib import admin

from apps.audit.models import AuditRecord


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = ("seq", "created_at", "event", "actor", "tenant", "subject", "pack_version")
    list_filter = ("event",)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
