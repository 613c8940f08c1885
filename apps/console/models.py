"""Console tables: evaluation runs of pack versions, review-queue items and their notes.

`ConsolePermissions` is a table-less model that only carries the `console.*` permissions the role
groups hold (see `apps.console.roles`).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import BaseModel


class ConsolePermissions(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_console", "Open the console"),
            ("edit_pack", "Edit prompt pack drafts"),
            ("run_eval", "Run a pack's evaluation set"),
            ("approve_pack", "Approve a pack version (never one's own)"),
            ("publish_pack", "Publish or roll back a pack version"),
            ("review_queue", "Work the review queue and answer customers as a human"),
            ("view_audit", "Search and open audit records"),
            ("view_audit_content", "See the personal content behind an audit record"),
            ("export_audit", "Verify and export the audit chain"),
            ("view_dashboard", "See dashboards"),
            ("use_arena", "Use the R1 vs Zero arena"),
        ]

    def __str__(self) -> str:
        return "console permissions"


class EvalStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ERROR = "error", "Error"


class EvalRun(BaseModel):
    """One run of a pack version's evaluation set against the real engine and safety pipeline."""

    pack_version = models.ForeignKey("prompt_packs.PackVersion", on_delete=models.CASCADE,
                                     related_name="eval_runs")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                   related_name="+")
    status = models.CharField(max_length=16, choices=EvalStatus.choices, default=EvalStatus.QUEUED)
    profile = models.CharField(max_length=8, default="r1")
    max_tokens = models.PositiveIntegerField(default=24)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    results = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"eval {self.pack_version} {self.status} {self.passed}/{self.total}"


class ReviewReason(models.TextChoices):
    BLOCKED = "blocked", "Blocked"
    ESCALATED = "escalated", "Escalated"
    RETRACTED = "retracted", "Retracted"
    FEEDBACK = "feedback", "Thumbs-down feedback"
    HUMAN = "human", "Asked for a human"


class ReviewStatus(models.TextChoices):
    OPEN = "open", "Open"
    ASSIGNED = "assigned", "Assigned"
    RESOLVED = "resolved", "Resolved"


class ReviewItem(BaseModel):
    """A conversation (at one message) that a person must look at."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey("conversations.Conversation", on_delete=models.CASCADE,
                                     related_name="+")
    message = models.ForeignKey("conversations.Message", null=True, blank=True, on_delete=models.CASCADE,
                                related_name="+")
    reason = models.CharField(max_length=16, choices=ReviewReason.choices)
    status = models.CharField(max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.OPEN,
                              db_index=True)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [
            models.UniqueConstraint(fields=["message", "reason"], name="review_item_unique_message_reason"),
        ]

    def __str__(self) -> str:
        return f"review {self.reason} {self.conversation_id} ({self.status})"


class ReviewNote(BaseModel):
    """An expert's annotation on a review item, or the text of a human reply sent to the customer."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=16, default="note")  # "note" | "reply"
    text = models.TextField()


class ArenaMatch(BaseModel):
    """One prompt answered by two engine profiles side by side; sides are shuffled for a blind vote."""

    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    pack_version = models.ForeignKey("prompt_packs.PackVersion", on_delete=models.PROTECT, related_name="+")
    prompt = models.TextField()
    left_profile = models.CharField(max_length=8)
    right_profile = models.CharField(max_length=8)
    # Tokens each side may generate (the arena's bound on work: Zero recomputes the whole prompt per token).
    max_tokens = models.PositiveSmallIntegerField(default=48)
    left = models.JSONField(default=dict, blank=True)   # {"answer", "verdicts", "ttft_s", "tok_s", "tokens", ...}
    right = models.JSONField(default=dict, blank=True)
    winner = models.CharField(max_length=8, blank=True)  # "left" | "right" | "tie"
    voted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    voted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"arena {self.left_profile} vs {self.right_profile} ({self.winner or 'no vote'})"
