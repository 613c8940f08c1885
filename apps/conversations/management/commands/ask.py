"""`manage.py ask --domain finance "question"`: one full turn through the real path, streamed to stdout.

The turn goes through `turn_submit` and the worker path of the current mode (the embedded thread, or
Celery workers in services mode; `--inline` runs the worker step in this process instead), and the
answer is printed as its events arrive on the stream bus. An operator's smoke test.
"""

from __future__ import annotations

import sys
import threading

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.services import demo_tenant_get
from apps.conversations.services import conversation_create, reply_generate, turn_submit
from apps.conversations.streams import events_follow
from apps.core.errors import ApplicationError


class Command(BaseCommand):
    help = "Ask one question through the full conversation path and print the streamed answer."

    def add_arguments(self, parser) -> None:
        parser.add_argument("question")
        parser.add_argument("--domain", required=True)
        parser.add_argument("--profile", default="r1", choices=["r1", "zero"])
        parser.add_argument("--reasoning", action="store_true", help="print the reasoning too")
        parser.add_argument("--inline", action="store_true", help="generate in this process (no worker needed)")
        parser.add_argument("--timeout", type=float, default=600.0)

    def handle(self, *args, **options) -> None:
        try:
            conversation = conversation_create(tenant=demo_tenant_get(), user=None, domain=options["domain"],
                                               profile=options["profile"])
            submitted = turn_submit(conversation=conversation, text=options["question"])
        except ApplicationError as exc:
            raise CommandError(f"{exc.code.value}: {exc.message}") from None
        reply_id = str(submitted.reply.id)
        if options["inline"]:
            threading.Thread(target=reply_generate, kwargs={"reply_id": reply_id}, daemon=True).start()
        out = self.stdout
        try:
            for _event_id, event, data in events_follow(reply_id, timeout_s=options["timeout"]):
                if event == "answer.delta":
                    out.write(data["text"], ending="")
                    out.flush()
                elif event == "reasoning.delta" and options["reasoning"]:
                    self.stderr.write(data["text"], ending="")
                elif event == "retract":
                    out.write(f"\n[retracted {data.get('target')}: {data.get('reason')}]\n")
                elif event == "error":
                    raise CommandError(f"{data.get('code')}: {data.get('message')}")
                elif event == "done":
                    out.write("\n")
                    usage = data.get("usage") or {}
                    self.stderr.write(f"[reply {reply_id} finish={data.get('finish_reason')} "
                                      f"tokens={usage.get('completion_tokens', '?')}]")
        except TimeoutError as exc:
            raise CommandError(str(exc)) from None
        sys.stdout.flush()
