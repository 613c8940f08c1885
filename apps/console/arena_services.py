"""Arena: one prompt to the R1 and Zero profiles at once, streamed side by side, voted on blind.

Each side runs in its own background thread through the same safety pipeline a customer's reply
passes, and publishes `answer.delta` / `reasoning.delta` / `done` / `error` on the stream bus under
`arena:<match>:<side>`; the page polls both keys. Text leaves only through the safety hold-back buffer
(200 characters), so each side also publishes `progress` `{"tokens", "t"}` per generated token: counts,
never text, which is how the page shows both engines working at once even when a short answer is held
until the end. `done` carries `started_at`, `first_token_at` and `finished_at` (epoch seconds) so that
the overlap of the two generations can be checked. Each match has its own `max_tokens` (1 to
ARENA_MAX_TOKENS_LIMIT): the Zero profile recomputes the whole pack prompt per token, so the bound on
work is explicit and shown. Which profile is "left" is random per match, so an expert votes on the
answers, not the names. Elo ratings are recomputed from all votes in order.
"""

from __future__ import annotations

import logging
import random
import resource
import threading
import time
from typing import Any

from django.db import close_old_connections, transaction
from django.utils import timezone

from apps.audit.services import audit_append
from apps.console.models import ArenaMatch
from apps.conversations.streams import stream_bus
from apps.core.errors import ApplicationError, ErrorCode
from apps.inference import services as inference
from apps.prompt_packs.rendering import prompt_build
from apps.prompt_packs.selectors import pack_published_get
from apps.safety.pipeline import SafetyPipeline

logger = logging.getLogger(__name__)

ARENA_MAX_TOKENS = 48  # default per match
ARENA_MAX_TOKENS_LIMIT = 256
ARENA_MAX_PROMPT = 2000
ELO_START, ELO_K = 1000.0, 32.0
SIDES = ("left", "right")


def arena_key(match_id: Any, side: str) -> str:
    return f"arena:{match_id}:{side}"


def arena_max_tokens_check(value: Any) -> int:
    """A match's token bound from a form or a caller: a whole number in 1..ARENA_MAX_TOKENS_LIMIT."""
    if value is None or value == "":
        return ARENA_MAX_TOKENS
    try:
        number = int(str(value).strip())
    except ValueError:
        number = 0
    if not 1 <= number <= ARENA_MAX_TOKENS_LIMIT:
        raise ApplicationError(ErrorCode.VALIDATION, f"Max tokens must be a whole number from 1 to "
                               f"{ARENA_MAX_TOKENS_LIMIT}.", field="max_tokens")
    return number


def arena_match_start(*, tenant: Any, actor: Any, domain: str, prompt: Any, max_tokens: Any = None) -> ArenaMatch:
    """Create a match and start both sides (after commit); `max_tokens` bounds each side's answer."""
    max_tokens = arena_max_tokens_check(max_tokens)
    if not isinstance(prompt, str) or not prompt.strip():
        raise ApplicationError(ErrorCode.MESSAGE_EMPTY, "Type a prompt for both engines.", field="prompt")
    if len(prompt) > ARENA_MAX_PROMPT:
        raise ApplicationError(ErrorCode.MESSAGE_TOO_LONG, f"Prompts are limited to {ARENA_MAX_PROMPT} characters.",
                               field="prompt")
    pack = pack_published_get(domain=domain)
    left, right = random.sample(["r1", "zero"], 2)
    match = ArenaMatch.objects.create(tenant=tenant, created_by=actor, pack_version=pack, prompt=prompt.strip(),
                                      left_profile=left, right_profile=right, max_tokens=max_tokens)
    transaction.on_commit(lambda: [_spawn(str(match.id), side) for side in SIDES])
    return match


def _spawn(match_id: str, side: str) -> None:
    threading.Thread(target=_side_run_safely, args=(match_id, side), name=f"verity-arena-{side}",
                     daemon=True).start()


def _side_run_safely(match_id: str, side: str) -> None:
    close_old_connections()
    try:
        arena_side_run(match_id=match_id, side=side)
    except Exception as exc:  # the page must learn that this side failed
        logger.exception("arena side %s of %s failed", side, match_id)
        stream_bus().publish(arena_key(match_id, side), "error", {"code": "internal_error", "message": str(exc)})
    finally:
        close_old_connections()


def arena_side_run(*, match_id: str, side: str) -> dict[str, Any]:
    """Generate one side through the safety pipeline; store and publish what the expert sees, with timings."""
    match = ArenaMatch.objects.select_related("pack_version").get(pk=match_id)
    profile, pack, bus, key = getattr(match, f"{side}_profile"), match.pack_version, stream_bus(), \
        arena_key(match_id, side)
    pipeline = SafetyPipeline.for_pack(pack)
    decision = pipeline.check_input(match.prompt)
    verdicts = [v.as_dict() for v in decision.verdicts]
    result: dict[str, Any] = {"answer": "", "ttft_s": None, "tok_s": None, "tokens": 0, "action": decision.action,
                              "max_tokens": match.max_tokens, "started_at": time.time(), "first_token_at": None}
    if decision.action == "block":
        result["answer"] = decision.message or ""
        bus.publish(key, "answer.delta", {"text": result["answer"]})
    else:
        build = prompt_build(pack=pack, history=[], user_text=decision.text,
                             is_r1=inference.engine_is_r1(profile=profile),
                             count_tokens=lambda messages: inference.chat_token_count(messages, profile=profile),
                             budget=inference.context_length(profile=profile) - match.max_tokens)
        stage = pipeline.output_stage()
        started, first = time.monotonic(), None
        for chunk in inference.generation_stream(messages=build.messages, sampling=pack.sampling,
                                                 max_tokens=match.max_tokens, profile=profile):
            if chunk.kind == "finish":
                result["tokens"] = int((chunk.usage or {}).get("completion_tokens", result["tokens"]))
                continue
            if first is None:
                first, result["first_token_at"] = time.monotonic(), time.time()
            result["tokens"] += 1
            bus.publish(key, "progress", {"tokens": result["tokens"], "t": round(time.time(), 3)})
            _publish(bus, key, stage.feed(chunk.kind, chunk.text))
        _publish(bus, key, stage.finish())
        ended = time.monotonic()
        result["answer"] = stage.answer_text
        result["ttft_s"] = round(first - started, 3) if first else None
        if first and result["tokens"] > 1 and ended > first:
            result["tok_s"] = round((result["tokens"] - 1) / (ended - first), 2)
        verdicts += [v.as_dict() for v in stage.verdicts]
    result["verdicts"] = verdicts
    result["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["finished_at"] = time.time()
    ArenaMatch.objects.filter(pk=match_id).update(**{side: result})
    bus.publish(key, "done", {"content": result["answer"], "ttft_s": result["ttft_s"], "tok_s": result["tok_s"],
                              "tokens": result["tokens"], "max_rss_mb": result["max_rss_mb"],
                              "max_tokens": result["max_tokens"], "started_at": result["started_at"],
                              "first_token_at": result["first_token_at"], "finished_at": result["finished_at"],
                              "verdicts": [v for v in verdicts if v.get("action") not in ("allow", "pass")]})
    return result


def _publish(bus: Any, key: str, emissions: list[Any]) -> None:
    for emission in emissions:
        if emission.kind == "retract":
            bus.publish(key, "retract", {"target": getattr(emission, "target", None) or "answer"})
        elif emission.text:
            bus.publish(key, f"{emission.kind}.delta", {"text": emission.text})


@transaction.atomic
def arena_vote(*, match: ArenaMatch, actor: Any, winner: str) -> ArenaMatch:
    if winner not in ("left", "right", "tie"):
        raise ApplicationError(ErrorCode.VALIDATION, "Vote for left, right or tie.", field="winner")
    match = ArenaMatch.objects.select_for_update().get(pk=match.pk)
    if match.winner:
        raise ApplicationError(ErrorCode.CONFLICT, "This match has been voted on already.", field="winner")
    if not (match.left and match.right):
        raise ApplicationError(ErrorCode.CONFLICT, "Wait until both answers are complete.", field="winner")
    match.winner, match.voted_by, match.voted_at = winner, actor, timezone.now()
    match.save(update_fields=["winner", "voted_by", "voted_at", "updated_at"])
    audit_append(event="arena.voted", actor=actor, tenant=match.tenant, subject=f"arena:{match.id}",
                 payload={"winner": winner, "left": match.left_profile, "right": match.right_profile},
                 pack_version=match.pack_version)
    return match


def elo_table(*, tenant: Any) -> list[dict[str, Any]]:
    """Elo per (profile, pack version) from every vote of `tenant`, oldest first."""
    ratings: dict[str, float] = {}
    games: dict[str, int] = {}
    votes = (ArenaMatch.objects.filter(tenant=tenant).exclude(winner="").select_related("pack_version")
             .order_by("voted_at"))
    for match in votes:
        pack = f"{match.pack_version.domain} v{match.pack_version.version}"
        left, right = f"{match.left_profile} · {pack}", f"{match.right_profile} · {pack}"
        rl, rr = ratings.get(left, ELO_START), ratings.get(right, ELO_START)
        expected_left = 1 / (1 + 10 ** ((rr - rl) / 400))
        score_left = {"left": 1.0, "right": 0.0, "tie": 0.5}[match.winner]
        ratings[left] = rl + ELO_K * (score_left - expected_left)
        ratings[right] = rr + ELO_K * ((1 - score_left) - (1 - expected_left))
        games[left], games[right] = games.get(left, 0) + 1, games.get(right, 0) + 1
    return [{"name": name, "rating": round(rating, 1), "games": games[name]}
            for name, rating in sorted(ratings.items(), key=lambda item: -item[1])]
