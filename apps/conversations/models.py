"""Conversation, Message and the Outbox row that tracks each reply's generation task.

PostgreSQL (or SQLite) is the source of truth, not the broker: a reply exists as a `pending` Message
with an Outbox row before any task is queued, so a lost task is found again by the reconciler.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import BaseModel


class Conversation(BaseModel):
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="conversations")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    domain = models.SlugField(max_length=32)
    title = models.CharField(max_length=200, blank=True)
    # Pinned at creation: the conversation keeps the pack version and engine profile it started with.
    pack_version = models.ForeignKey("prompt_packs.PackVersion", on_delete=models.PROTECT, related_name="+")
    engine_profile = models.CharField(max_length=8, default="r1")
    deleted_at = models.DateTimeField(null=True, blank=True)  # the customer's copy is gone; the record stays

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["user", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.domain}: {self.title or self.id}"


class Role(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    STREAMING = "streaming", "Streaming"
    COMPLETE = "complete", "Complete"
    FAILED = "failed", "Failed"


class Message(BaseModel):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    reply_to = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="reply"
    )
    verdicts = models.JSONField(default=list, blank=True)
    # The input stage's decision for the turn ("allow", "block", "escalate") and the text it asks to show.
    input_action = models.CharField(max_length=16, default="allow")
    preface = models.TextField(blank=True)
    disclaimer = models.TextField(blank=True)
    pack_version = models.ForeignKey("prompt_packs.PackVersion", on_delete=models.PROTECT, related_name="+")
    engine_profile = models.CharField(max_length=8, default="r1")
    model_version = models.CharField(max_length=200, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    error = models.JSONField(default=dict, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at",)

    def __str__(self) -> str:
        return f"{self.role} {self.status} {self.id}"


class Outbox(BaseModel):
    """The generation task of one reply: who holds it, when it last showed life, how often it restarted."""

    reply = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="outbox")
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=128, blank=True)  # "<host>:<pid>:<thread>:<nonce>"
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    reconciled = models.PositiveIntegerField(default=0)
    done_at = models.DateTimeField(null=True, blank=True, db_index=True)

    def __str__(self) -> str:
        return f"outbox {self.reply_id} attempts={self.attempts}"
