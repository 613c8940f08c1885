"""App config for conversations."""

from django.apps import AppConfig


class ConversationsConfig(AppConfig):
    name = "apps.conversations"
    label = "conversations"

    def ready(self) -> None:
        from apps.audit.erasure import subject_eraser_register
        from apps.conversations.erasure import reply_streams_erase

        # First: it reads the ids of the rows the default plan then deletes.
        subject_eraser_register("conversations.streams", reply_streams_erase, first=True)
