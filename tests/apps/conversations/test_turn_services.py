"""turn_submit and reply_generate in-process (services mode: PostgreSQL + Redis Streams).

The stand-in engine (`fake_engine`) replaces model_core here: these tests are about what gets stored,
streamed and audited; the real model runs in test_services_mode_e2e.py and test_ask_command.py.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.accounts.services import demo_tenant_get
from apps.audit.models import AuditRecord
from apps.audit.services import audit_verify
from apps.conversations.models import Message, Outbox, Status
from apps.conversations.reconcile import replies_reconcile
from apps.conversations.services import conversation_create, reply_generate, turn_submit
from apps.conversations.streams import stream_bus
from apps.core.errors import ApplicationError, ErrorCode

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(packs, customer):
    return conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")


def _events(reply_id):
    return [(event, data) for _id, event, data in stream_bus().read(str(reply_id), None, 0)]


def test_turn_submit_stores_user_message_pending_reply_and_outbox_and_enqueues_on_commit(
        conversation, django_capture_on_commit_callbacks, monkeypatch):
    enqueued = []
    monkeypatch.setattr("apps.conversations.dispatch.reply_enqueue", enqueued.append)
    with django_capture_on_commit_callbacks(execute=True):
        submitted = turn_submit(conversation=conversation, text="What is compound interest?")
    reply = submitted.reply
    assert submitted.user_message.content == "What is compound interest?"
    assert reply.status == Status.PENDING and reply.reply_to == submitted.user_message
    assert reply.pack_version == conversation.pack_version and reply.engine_profile == "r1"
    assert Outbox.objects.get(reply=reply).enqueued_at is not None
    assert enqueued == [str(reply.id)]
    conversation.refresh_from_db()
    assert conversation.title == "What is compound interest?"


@pytest.mark.parametrize(("text", "code"), [("", ErrorCode.MESSAGE_EMPTY), ("   \n", ErrorCode.MESSAGE_EMPTY),
                                            ("x" * 9000, ErrorCode.MESSAGE_TOO_LONG), (42, ErrorCode.VALIDATION)])
def test_bad_input_stores_nothing(conversation, text, code):
    with pytest.raises(ApplicationError) as info:
        turn_submit(conversation=conversation, text=text)
    assert info.value.code == code
    assert Message.objects.count() == 0 and Outbox.objects.count() == 0


def test_reply_generate_streams_stores_and_audits_one_record(conversation, fake_engine):
    reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
    stored = reply_generate(reply_id=str(reply.id))
    assert stored is not None and stored.status == Status.COMPLETE
    assert stored.content.startswith("Compound interest is interest")
    assert stored.reasoning.startswith("The user asks")
    assert stored.disclaimer == conversation.pack_version.disclaimer and stored.disclaimer
    assert stored.usage["completion_tokens"] > 0 and stored.model_version == "fake/r1"
    events = _events(reply.id)
    names = [name for name, _ in events]
    assert "reasoning.delta" in names and "answer.delta" in names and names[-1] == "done"
    streamed = "".join(d["text"] for name, d in events if name == "answer.delta")
    assert streamed.startswith(stored.content)  # the disclaimer follows the answer on the stream
    assert events[-1][1]["content"] == stored.content and events[-1][1]["disclaimer"] == stored.disclaimer
    record = AuditRecord.objects.get(event__startswith="turn.")
    assert (record.event, record.subject, record.pack_version) == ("turn.completed", str(reply.id), "finance@1")
    assert audit_verify().ok


@pytest.mark.parametrize(("answer", "limit", "finish"), [("", 256, "stop"), ("Compound interest is", 4, "length")])
def test_a_reply_whose_model_wrote_no_answer_says_so_instead_of_an_empty_bubble(conversation, fake_engine, settings,
                                                                                  answer, limit, finish):
    """The reasoning used up max_tokens, or the model stopped right after it: the customer reads a note,
    the stored finish_reason says which, and the audit's raw record keeps what the model wrote."""
    from apps.conversations.services import NO_ANSWER_NOTES

    fake_engine.answer, settings.VERITY_MAX_NEW_TOKENS = answer, limit
    reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
    stored = reply_generate(reply_id=str(reply.id))
    assert stored.status == Status.COMPLETE and stored.finish_reason == finish
    assert stored.content == NO_ANSWER_NOTES[finish] and stored.reasoning.startswith("The user asks")
    assert stored.disclaimer
    events = _events(reply.id)
    streamed = "".join(d["text"] for name, d in events if name == "answer.delta")
    assert streamed == NO_ANSWER_NOTES[finish] + "\n\n" + stored.disclaimer
    assert events[-1][1]["content"] == stored.content and events[-1][1]["finish_reason"] == finish
    assert audit_verify().ok


def test_a_caller_stop_string_that_ends_the_answer_at_once_gets_no_note(conversation, fake_engine):
    fake_engine.answer = ""
    reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
    Message.objects.filter(pk=reply.pk).update(sampling={"stop": ["Compound"]})
    stored = reply_generate(reply_id=str(reply.id))
    assert stored.finish_reason == "stop" and stored.content == ""


def test_a_reply_cut_short_inside_its_answer_keeps_the_answer_without_a_note(conversation, fake_engine, settings):
    settings.VERITY_MAX_NEW_TOKENS = 9  # 6 reasoning pieces (5 words and the trailing ""), then 3 answer words
    reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
    stored = reply_generate(reply_id=str(reply.id))
    assert stored.finish_reason == "length" and stored.content.startswith("Compound interest is")


def test_reply_generate_is_idempotent(conversation, fake_engine):
    reply = turn_submit(conversation=conversation, text="What is a bond?").reply
    assert reply_generate(reply_id=str(reply.id)) is not None
    assert reply_generate(reply_id=str(reply.id)) is None
    assert len(fake_engine.prompts) == 1 and AuditRecord.objects.filter(event__startswith="turn.").count() == 1
    assert [name for name, _ in _events(reply.id)].count("done") == 1


def test_history_is_sent_without_earlier_reasoning(conversation, fake_engine):
    first = turn_submit(conversation=conversation, text="My savings goal is 417 pounds. What is an ETF?").reply
    reply_generate(reply_id=str(first.id))
    second = turn_submit(conversation=conversation, text="What was my savings goal?").reply
    reply_generate(reply_id=str(second.id))
    prompt = fake_engine.prompts[-1]
    joined = "\n".join(m["content"] for m in prompt)
    assert "savings goal is 417" in joined and "Compound interest is interest" in joined
    assert "The user asks" not in joined  # reasoning is never fed back
    assert prompt[-1]["role"] == "user" and "What was my savings goal?" in prompt[-1]["content"]


def test_engine_failure_marks_the_reply_failed_streams_an_error_and_audits(conversation, fake_engine):
    fake_engine.fail_with = ApplicationError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, "prompt too long")
    reply = turn_submit(conversation=conversation, text="What is inflation?").reply
    reply_generate(reply_id=str(reply.id))
    reply.refresh_from_db()
    assert reply.status == Status.FAILED and reply.error["code"] == "context_length_exceeded"
    assert _events(reply.id)[-1] == ("error", {"code": "context_length_exceeded", "message": "prompt too long"})
    assert AuditRecord.objects.get(event__startswith="turn.").event == "turn.failed"


def test_reconciler_restarts_a_reply_whose_worker_died(conversation, fake_engine,
                                                       django_capture_on_commit_callbacks, monkeypatch):
    enqueued = []
    monkeypatch.setattr("apps.conversations.dispatch.reply_enqueue", enqueued.append)
    reply = turn_submit(conversation=conversation, text="What is diversification?").reply
    # A worker claimed it, streamed a little, then vanished: the claim's heartbeat goes stale.
    stale = timezone.now() - timezone.timedelta(seconds=600)
    Outbox.objects.filter(reply=reply).update(claimed_by="dead-host:1:1:x", heartbeat_at=stale, attempts=1)
    Message.objects.filter(pk=reply.pk).update(status=Status.STREAMING)
    stream_bus().publish(str(reply.id), "answer.delta", {"text": "Diversi"})
    fresh = turn_submit(conversation=conversation, text="And a live one?").reply
    Outbox.objects.filter(reply=fresh).update(claimed_by="live:1:1:y", heartbeat_at=timezone.now())
    Message.objects.filter(pk=fresh.pk).update(status=Status.STREAMING)

    with django_capture_on_commit_callbacks(execute=True):
        requeued = replies_reconcile(older_than_s=60)
    assert requeued == [str(reply.id)] and enqueued == [str(reply.id)]
    reply.refresh_from_db()
    assert reply.status == Status.PENDING and Outbox.objects.get(reply=reply).claimed_by == ""

    finished = reply_generate(reply_id=str(reply.id))
    assert finished.status == Status.COMPLETE
    names = [name for name, _ in _events(reply.id)]
    assert names[:3] == ["answer.delta", "retract", "retract"]  # consumers drop the dead attempt's text
    assert names[-1] == "done" and Outbox.objects.get(reply=reply).attempts == 2
    assert reply_generate(reply_id=str(fresh.id)) is None  # a live worker's reply is left alone


def _scripted_stream(seen, pieces):
    from apps.inference.services import Chunk

    def stream(*, messages, sampling, max_tokens, profile="r1"):
        seen.append(dict(sampling))
        for piece in pieces:
            yield Chunk("answer", piece)
        yield Chunk("finish", finish_reason="stop", usage={"prompt_tokens": 5, "completion_tokens": len(pieces),
                                                           "total_tokens": 5 + len(pieces)})
    return stream


def test_free_text_reply_bans_at_and_paints_a_word_with_its_first_token(conversation, fake_engine, monkeypatch):
    """The engine is asked never to write "@" (SamplingParams.banned_chars), and the output stage then
    releases a word's first letters at once: "Comp" is on the stream before "ound" was produced."""
    from apps.inference import services as inference

    seen, published = [], []
    pieces = ["Comp", "ound", " interest", " grows", "."]
    monkeypatch.setattr(inference, "generation_stream", _scripted_stream(seen, pieces))
    bus = stream_bus()
    real_publish = bus.publish
    monkeypatch.setattr(type(bus), "publish", lambda self, reply_id, event, data: (
        published.append((event, data)), real_publish(reply_id, event, data))[1])
    reply = turn_submit(conversation=conversation, text="What is compound interest?").reply
    stored = reply_generate(reply_id=str(reply.id))
    assert "@" in seen[0]["banned_chars"]
    answer = [d["text"] for event, d in published if event == "answer.delta"]
    assert answer[:2] == ["Comp", "ound"]
    assert stored.content.startswith("Compound interest grows.")


def test_structured_reply_keeps_whole_word_release_and_may_write_at(conversation, fake_engine, monkeypatch):
    from apps.inference import services as inference

    seen = []
    monkeypatch.setattr(inference, "generation_stream", _scripted_stream(seen, ['{"a"', ': "x"}']))
    reply = turn_submit(conversation=conversation, text="What is compound interest? Answer in JSON.").reply
    Message.objects.filter(id=reply.id).update(sampling={"response_format": {"type": "json_object"}})
    reply_generate(reply_id=str(reply.id))
    assert "banned_chars" not in seen[0]
