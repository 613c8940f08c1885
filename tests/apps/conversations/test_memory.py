"""Conversation memory: the window under the token budget, the running summary, the context gauge.

The first tests use the stand-in engine (its token count is len/4 + 4 per message) to pin down the
bookkeeping; the last one runs a 60-turn conversation through the real bundled model. It is kept
quick by a small artificial prompt budget (VERITY_CONTEXT_BUDGET = the instructions + ~260 tokens, so
the window moves after a handful of turns), short turns, 6 new tokens per reply and a 24-token summary;
each fold leaves headroom, so the summary is folded every few turns rather than before every reply.
"""

from __future__ import annotations

import pytest

from apps.accounts.services import demo_tenant_get
from apps.conversations.models import Conversation
from apps.conversations.services import conversation_create, reply_generate, turn_submit
from apps.conversations.streams import stream_bus
from apps.inference import services as inference
from apps.prompt_packs.rendering import pack_preamble

pytestmark = pytest.mark.django_db


def _events(reply_id):
    return [(event, data) for _id, event, data in stream_bus().read(str(reply_id), None, 0)]


def _recording(monkeypatch):
    """Wrap the generation seam: record each call as ("turn" | "summary", messages, max_tokens)."""
    calls, real = [], inference.generation_stream

    def stream(*, messages, sampling, max_tokens, profile="r1"):
        calls.append(("summary" if sampling == {"greedy": True} else "turn", messages, max_tokens))
        yield from real(messages=messages, sampling=sampling, max_tokens=max_tokens, profile=profile)

    monkeypatch.setattr(inference, "generation_stream", stream)
    return calls


@pytest.fixture
def conversation(packs, customer):
    return conversation_create(tenant=demo_tenant_get(), user=customer, domain="finance")


def _run_turns(conversation, texts):
    out = []
    for text in texts:
        reply = turn_submit(conversation=conversation, text=text).reply
        reply_generate(reply_id=str(reply.id))
        out.append((str(reply.id), _events(reply.id)))
    return out


def test_gauge_is_reported_without_trimming_while_everything_fits(conversation, fake_engine, client, customer):
    (reply_id, events), = _run_turns(conversation, ["What is compound interest?"])
    assert "context_trimmed" not in [e for e, _ in events]
    done = events[-1][1]
    assert 0 < done["context"]["tokens"] < done["context"]["budget"] == 8192 - 512
    client.force_login(customer)
    body = client.get(f"/chat/api/conversations/{conversation.id}").json()
    assert body["context"] == done["context"]


def test_summary_is_folded_once_per_window_move_and_kept_in_the_prompt(conversation, fake_engine, settings,
                                                                       monkeypatch):
    fake_engine.reasoning, fake_engine.answer = "", "Noted. "
    preamble = len(pack_preamble(conversation.pack_version)) // 4 + 4
    settings.VERITY_MAX_NEW_TOKENS, settings.VERITY_SUMMARY_MAX_TOKENS = 8, 16
    settings.VERITY_CONTEXT_BUDGET = preamble + 16 + 48 + 60  # room for ~4 short turns besides the summary
    calls = _recording(monkeypatch)
    texts = [f"I saved {100 + i} dollars this month, item {i}." for i in range(12)]
    results = _run_turns(conversation, texts)
    conversation.refresh_from_db()
    starts = [events[-1][1]["memory"]["window_start"] for _, events in results]
    moves = sum(1 for before, after in zip([0, *starts], starts, strict=False) if after > before)
    assert moves >= 3 and conversation.summary_regenerations == moves
    assert sum(kind == "summary" for kind, *_ in calls) == moves
    assert conversation.summary_upto == starts[-1] and conversation.summary
    trimmed = next(d for e, d in results[-1][1] if e == "context_trimmed")
    assert trimmed["dropped_turns"] > 0 and trimmed["tokens"] <= trimmed["budget"] == settings.VERITY_CONTEXT_BUDGET
    last_prompt = [m for kind, m, _ in calls if kind == "turn"][-1]
    assert "Summary of the earlier part" in last_prompt[0]["content"]
    assert conversation.summary in last_prompt[0]["content"]
    assert last_prompt[-1]["content"] == texts[-1]


def test_a_fold_leaves_headroom_so_the_next_turns_need_no_model_call(conversation, fake_engine, settings,
                                                                     monkeypatch):
    """After a fold the kept turns take at most VERITY_SUMMARY_FOLD_TO of the room above the instructions
    and the newest message, so a long conversation pays a summary call every few turns, not every turn;
    the prompt never repeats a turn the summary covers."""
    fake_engine.reasoning, fake_engine.answer = "", "Noted. "
    preamble = len(pack_preamble(conversation.pack_version)) // 4 + 4
    settings.VERITY_MAX_NEW_TOKENS, settings.VERITY_SUMMARY_MAX_TOKENS = 8, 16
    settings.VERITY_CONTEXT_BUDGET = preamble + 16 + 48 + 140  # room for ~7 short turns besides the summary
    settings.VERITY_SUMMARY_FOLD_TO = 0.5
    calls = _recording(monkeypatch)
    texts = [f"I saved {100 + i} dollars this month, item {i}." for i in range(30)]
    results = _run_turns(conversation, texts)
    conversation.refresh_from_db()
    starts = [events[-1][1]["memory"]["window_start"] for _, events in results]
    assert starts == sorted(starts)  # the window only moves forward
    moves = sum(1 for before, after in zip([0, *starts], starts, strict=False) if after > before)
    assert moves == conversation.summary_regenerations == sum(kind == "summary" for kind, *_ in calls)
    assert 3 <= moves <= len(texts) // 3  # headroom: at least three turns between two summary calls
    prompts = [m for kind, m, _ in calls if kind == "turn"]
    for index, (prompt, start) in enumerate(zip(prompts, starts, strict=True)):
        shown = [m["content"] for m in prompt if m["role"] == "user"]
        assert shown == texts[start:index + 1]  # from the window start to the newest, nothing covered twice


@pytest.mark.slow
def test_sixty_turns_with_the_real_model_stay_in_context(conversation, real_model, settings, monkeypatch):
    profile = conversation.engine_profile
    pack = conversation.pack_version
    minimal = inference.chat_token_count([{"role": "system", "content": pack_preamble(pack)},
                                          {"role": "user", "content": "I saved 0 dollars this month, item 0."}], profile=profile)
    settings.VERITY_MAX_NEW_TOKENS, settings.VERITY_SUMMARY_MAX_TOKENS = 6, 24
    settings.VERITY_CONTEXT_BUDGET = minimal + 24 + 48 + 190
    context = inference.context_length(profile=profile)
    calls = _recording(monkeypatch)
    # Plain, safe texts: the input stage must allow every turn so that each one reaches the model.
    texts = [f"I saved {i * 7} dollars this month, item {i}." for i in range(60)]
    results = []
    for index, text in enumerate(texts):
        before = Conversation.objects.get(pk=conversation.pk).summary_regenerations
        results.extend(_run_turns(conversation, [text]))
        after = Conversation.objects.get(pk=conversation.pk).summary_regenerations
        assert after - before <= 1, f"turn {index}: summary regenerated {after - before} times"
        kind, prompt, max_tokens = [c for c in calls if c[0] == "turn"][-1]
        tokens = inference.chat_token_count(prompt, profile=profile)
        assert tokens <= settings.VERITY_CONTEXT_BUDGET and tokens + max_tokens <= context
        assert pack.instructions.strip()[:80] in prompt[0]["content"]  # the pack's instructions stay
        assert prompt[-1]["content"] == text  # and so does the newest turn
        assert results[-1][1][-1][0] == "done"
    conversation.refresh_from_db()
    starts = [events[-1][1]["memory"]["window_start"] for _, events in results]
    moves = sum(1 for before, after in zip([0, *starts], starts, strict=False) if after > before)
    assert moves >= 5 and 1 <= conversation.summary_regenerations <= moves
    assert conversation.summary_regenerations <= len(texts) // 2  # folds leave headroom (VERITY_SUMMARY_FOLD_TO)
    assert conversation.summary.strip() and conversation.summary_upto == starts[-1] > 0
    assert 0 < conversation.context_tokens <= conversation.context_budget == settings.VERITY_CONTEXT_BUDGET
