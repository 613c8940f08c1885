"""The subject's live streams: what erasure removes outside the database.

Every reply's events (its text as it streamed) and every conversation's own events (an expert's human
reply) sit in the stream bus (Redis Streams in services mode, memory in the embedded mode) until they
expire. `subject_erase` deletes the rows; this eraser, registered first (`apps.py`), reads the ids of
the subject's replies and conversations before the rows go and deletes their streams once the erasure
commits, so a rolled-back erasure leaves the live streams as they were.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from apps.conversations.models import Conversation, Message, Role
from apps.conversations.streams import conversation_stream_key, stream_bus


def reply_streams_erase(user: Any) -> int:
    """Schedule the deletion of `user`'s reply and conversation streams at commit; returns how many."""
    conversations = [str(pk) for pk in Conversation.objects.filter(user=user).values_list("pk", flat=True)]
    replies = [str(pk) for pk in Message.objects.filter(conversation__user=user, role=Role.ASSISTANT)
               .values_list("pk", flat=True)]
    keys = replies + [conversation_stream_key(pk) for pk in conversations]

    def delete() -> None:
        bus = stream_bus()
        for key in keys:
            bus.delete(key)

    transaction.on_commit(delete)
    return len(keys)
