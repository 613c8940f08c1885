"""Conversation, Message, the Outbox row of each reply, and the customer's Feedback and HandoffRequest.

PostgreSQL (or SQLite) is the source of truth, not the broker: a reply exists as a `pending` Message
with an Outbox row before any task is queued, so a lost task is found again by the reconciler.
A conversation carries its memory (the running summary of turns that left the context window) and
its context gauge; a customer's delete only sets `deleted_at` (the regulated record stays, see
docs/CONTRACTS.md "Delete and retention").
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
    # Memory: the model-written summary of turns [0, summary_upto) that no longer fit the window.
    summary = models.TextField(blank=True)
    summary_upto = models.PositiveIntegerField(default=0)
    summary_regenerations = models.PositiveIntegerField(default=0)
    # The context gauge of the latest prompt: tokens it used out of the prompt budget.
    context_tokens = models.PositiveIntegerField(default=0)
    context_budget = models.PositiveIntegerField(default=0)

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
    CANCELLED = "cancelled", "Cancelled"  # the customer pressed stop; the partial answer is kept


TERMINAL_STATUSES = (Status.COMPLETE, Status.FAILED, Status.CANCELLED)


class Message(BaseModel):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE, db_index=True)
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    # A foreign key, not one-to-one: regenerate adds a second reply to the same question.
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="replies"
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
    # "crisis" | "emergency" | "fraud" | "human" when the input stage escalated this turn.
    escalation_kind = models.CharField(max_length=32, blank=True)
    # Regenerate: the old reply is kept (it was shown, it is a record) but no longer part of the chat.
    superseded_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    # The sampling this reply is generated with: the pack's defaults with the request's validated
    # overrides on top (temperature, top_p, max_tokens, stop, seed, response_format). Empty: pack defaults.
    sampling = models.JSONField(default=dict, blank=True)

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


class Rating(models.TextChoices):
    UP = "up", "Thumbs up"
    DOWN = "down", "Thumbs down"


class Feedback(BaseModel):
    """A customer's thumbs up/down on one assistant reply (one per user and message; the last one wins)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    rating = models.CharField(max_length=8, choices=Rating.choices)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="feedback_unique_message_user")]

    def __str__(self) -> str:
        return f"{self.rating} on {self.message_id}"


class HandoffStatus(models.TextChoices):
    OPEN = "open", "Open"  # waiting for an expert
    ANSWERED = "answered", "Answered"  # an expert replied in the conversation
    CLOSED = "closed", "Closed"


class HandoffRequest(BaseModel):
    """"Talk to a human": a customer's request that lands in the experts' queue (apps.console reads it)."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="+")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="handoffs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="+")
    reason = models.TextField(blank=True)
    # "human" when the customer asked; "crisis"/"emergency"/... when an escalated turn asked for one.
    kind = models.CharField(max_length=32, default="human")
    status = models.CharField(max_length=16, choices=HandoffStatus.choices, default=HandoffStatus.OPEN,
                              db_index=True)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at",)
        indexes = [models.Index(fields=["tenant", "status", "created_at"])]

    def __str__(self) -> str:
        return f"handoff {self.conversation_id} {self.status}"
