"""Admin views of conversations and messages (the console's review queue builds on them)."""

from django.contrib import admin

from apps.conversations.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    fk_name = "conversation"
    fields = ("role", "status", "content", "finish_reason", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "domain", "title", "tenant", "user", "engine_profile", "created_at")
    list_filter = ("domain", "engine_profile")
    inlines = [MessageInline]
