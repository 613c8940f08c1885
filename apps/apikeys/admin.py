"""Console (admin) views of partner apps and keys: keys are issued by the service, never typed in."""

from django.contrib import admin

from apps.apikeys.models import ApiKey, PartnerApp, UsageRecord


@admin.register(PartnerApp)
class PartnerAppAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "is_active", "created_at")
    list_filter = ("tenant", "is_active")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "tenant", "partner_app", "expires_at", "revoked_at", "last_used_at")
    list_filter = ("tenant",)
    readonly_fields = ("prefix", "secret_hash", "last_used_at", "revoked_at", "created_by")

    def has_add_permission(self, request) -> bool:  # the plaintext must come from api_key_create
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = ("created_at", "api_key", "model", "prompt_tokens", "completion_tokens")
    list_filter = ("tenant", "model")
