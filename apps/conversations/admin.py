"""Admin views of conversations, messages, feedback and handoff requests (the console builds on them)."""

from django.contrib import admin

from apps.conversations.models import Conversation, Feedback, HandoffRequest, Message


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


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("message", "user", "rating", "reason", "created_at")
    list_filter = ("rating",)


@admin.register(HandoffRequest)
class HandoffRequestAdmin(admin.ModelAdmin):
    list_display = ("conversation", "requested_by", "kind", "status", "created_at", "answered_by")
    list_filter = ("status", "kind")
