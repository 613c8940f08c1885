"""Partner API bookkeeping: which partner app owns a conversation, stored idempotent requests, and the
feedback and escalations partners send about replies.

The conversation itself is the conversation core's object (the one the console reviews); this app only
links it to the partner app and key that created it, so a key sees exactly its app's conversations.
"""

from __future__ import annotations

from django.db import models

from apps.core.models import BaseModel


class PartnerConversation(models.Model):
    conversation = models.OneToOneField("conversations.Conversation", primary_key=True,
                                        on_delete=models.CASCADE, related_name="partner_link")
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    partner_app = models.ForeignKey("apikeys.PartnerApp", on_delete=models.CASCADE, related_name="conversations")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.partner_app_id} -> {self.conversation_id}"


class IdempotencyRecord(BaseModel):
    """One POST with an `Idempotency-Key`: the request's digest, and once finished its response.

    For a chat completion the reply id is stored as soon as the turn is submitted, so a retry that
    arrives while the first request is still generating follows the same reply instead of starting one.
    """

    api_key = models.ForeignKey("apikeys.ApiKey", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64)
    path = models.CharField(max_length=200)
    reply_id = models.UUIDField(null=True, blank=True)
    model = models.CharField(max_length=64, blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_key")]

    def __str__(self) -> str:
        return f"{self.api_key_id}:{self.key}"


class Feedback(BaseModel):
    message = models.ForeignKey("conversations.Message", on_delete=models.CASCADE, related_name="partner_feedback")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    rating = models.SmallIntegerField()  # +1 helpful, -1 not helpful
    comment = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.message_id} {self.rating:+d}"


class Escalation(BaseModel):
    """A partner asks for a human to review a conversation (the console's review queue reads these)."""

    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE,
                                     related_name="partner_escalations")
    api_key = models.ForeignKey("apikeys.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.TextField()
    status = models.CharField(max_length=16, default="open")

    def __str__(self) -> str:
        return f"{self.conversation_id} {self.status}"
