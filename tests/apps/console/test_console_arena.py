"""Arena: both sides stream through the safety pipeline onto their own keys, a blind vote is recorded
once, and the Elo table moves toward the winner. The stand-in engine is used: the subject here is the
arena's bookkeeping, not model_core (the browser test drives the real engines)."""

from __future__ import annotations

import pytest

from apps.audit.models import AuditRecord


@pytest.fixture
def match(staff, fake_engine, django_capture_on_commit_callbacks):
    from apps.console import arena_services
    from apps.console.arena_services import arena_match_start

    spawned = []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        started = arena_match_start(tenant=staff.tenant, actor=staff.users["expert"], domain="finance",
                                    prompt="What is compound interest?")
    assert len(callbacks) == 1
    for side in arena_services.SIDES:  # run the two sides here instead of in threads
        spawned.append(arena_services.arena_side_run(match_id=str(started.id), side=side))
    started.refresh_from_db()
    return started


def test_both_sides_stream_with_timings_and_verdicts(match):
    from apps.console.arena_services import arena_key
    from apps.conversations.streams import stream_bus

    assert {match.left_profile, match.right_profile} == {"r1", "zero"}
    for side in ("left", "right"):
        events = stream_bus().read(arena_key(match.id, side), None, 0)
        names = [name for _id, name, _data in events]
        assert "answer.delta" in names and names[-1] == "done"
        done = events[-1][2]
        assert done["tokens"] > 0 and done["ttft_s"] is not None and done["tok_s"] > 0
        assert "Compound interest" in getattr(match, side)["answer"]


def test_vote_once_updates_elo_and_is_audited(staff, match):
    client = staff.client("expert")
    assert client.post(f"/console/arena/{match.id}/vote", {"winner": "left"}).status_code == 302
    again = client.post(f"/console/arena/{match.id}/vote", {"winner": "right"}, follow=True)
    assert "voted on already" in again.content.decode()
    match.refresh_from_db()
    assert match.winner == "left"
    page = client.get("/console/arena/").content.decode()
    assert f"{match.left_profile} · finance v1</td><td>1016.0" in page
    assert f"{match.right_profile} · finance v1</td><td>984.0" in page
    assert AuditRecord.objects.filter(event="arena.voted").count() == 1
    revealed = client.get(f"/console/arena/{match.id}/").content.decode()
    assert f"A was {match.left_profile.upper()}" in revealed


def test_events_endpoint_resumes_after_an_event_id(staff, match):
    client = staff.client("expert")
    first = client.get(f"/console/arena/{match.id}/events.json").json()
    last_left = first["left"][-1]["id"]
    rest = client.get(f"/console/arena/{match.id}/events.json?left_after={last_left}").json()
    assert rest["left"] == [] and len(rest["right"]) == len(first["right"])
    assert client.get(f"/console/arena/{match.id}/events.json?left_after=bogus").status_code == 400


def test_an_empty_prompt_is_refused(staff):
    response = staff.client("expert").post("/console/arena/start", {"domain": "finance", "prompt": " "},
                                           follow=True)
    assert "Type a prompt" in response.content.decode()


def test_max_tokens_per_match_bounds_each_side_and_progress_counts_tokens(staff, fake_engine,
                                                                          django_capture_on_commit_callbacks):
    from apps.console import arena_services
    from apps.conversations.streams import stream_bus

    with django_capture_on_commit_callbacks(execute=False):
        started = arena_services.arena_match_start(tenant=staff.tenant, actor=staff.users["expert"],
                                                   domain="finance", prompt="What is compound interest?",
                                                   max_tokens="3")
    assert started.max_tokens == 3
    for side in arena_services.SIDES:
        result = arena_services.arena_side_run(match_id=str(started.id), side=side)
        events = stream_bus().read(arena_services.arena_key(started.id, side), None, 0)
        progress = [data["tokens"] for _id, name, data in events if name == "progress"]
        assert 1 <= result["tokens"] <= 3 and progress == list(range(1, result["tokens"] + 1))
        done = events[-1][2]
        assert done["max_tokens"] == 3
        assert done["started_at"] <= done["first_token_at"] <= done["finished_at"]


@pytest.mark.parametrize("value", ["0", "257", "eight", "-1"])
def test_max_tokens_out_of_range_is_refused_before_anything_runs(staff, value):
    from apps.console.models import ArenaMatch

    response = staff.client("expert").post("/console/arena/start", {"domain": "finance", "prompt": "Hi",
                                                                    "max_tokens": value}, follow=True)
    assert "Max tokens must be a whole number from 1 to 256" in response.content.decode()
    assert not ArenaMatch.objects.exists()
