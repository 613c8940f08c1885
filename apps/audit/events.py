"""The audit event registry: stable dotted names for everything Verity records.

Services name an event from this registry; `audit_append` refuses an unknown name so that a typo does
not create a new, unsearchable kind of record. Later issues add names here.
"""

from __future__ import annotations

AUDIT_EVENTS: dict[str, str] = {
    "turn.completed": "an assistant reply was produced and shown (or blocked) for a user turn",
    "turn.failed": "a reply could not be produced",
    "pack.loaded": "a prompt pack version was loaded from domains/",
    "pack.approved": "a prompt pack version was approved",
    "pack.published": "a prompt pack version was published",
    "pack.archived": "a prompt pack version was archived",
    "apikey.issued": "a partner API key was issued",
    "apikey.revoked": "a partner API key was revoked",
    "auth.login": "a user signed in",
    "conversation.exported": "a conversation was exported",
    "conversation.deleted": "a customer deleted their copy of a conversation",
    "subject.erased": "a data subject's key was destroyed (erasure)",
    "legal_hold.set": "a legal hold was placed",
    "legal_hold.released": "a legal hold was released",
    "escalation.requested": "a conversation was escalated to a human",
    # console (issue 8)
    "pack.drafted": "a prompt pack draft was saved in the console",
    "pack.evaluated": "a pack version's evaluation set was run",
    "pack.rolled_back": "a previously published pack version was published again",
    "pack.canary_set": "a share of new conversations was given a candidate pack version",
    "pack.canary_cleared": "a pack canary share was ended",
    "review.assigned": "a review-queue item was assigned",
    "review.annotated": "a note was added to a review-queue item",
    "review.resolved": "a review-queue item was resolved",
    "review.human_reply": "an expert answered a customer as a human",
    "audit.viewed": "an audit record was opened in the console",
    "audit.verified": "the audit chain was verified from the console",
    "audit.exported": "audit records were exported",
    "arena.voted": "an expert voted in the arena",
}


def audit_event_check(event: str) -> str:
    if event not in AUDIT_EVENTS:
        raise ValueError(f"Unknown audit event {event!r}; register it in apps/audit/events.py")
    return event
