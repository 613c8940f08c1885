"""Engine lifecycle and generation for the rest of Verity (the one seam to model_core).

- `engine_get(profile)`: one Engine per profile per process, loaded lazily on first use, thread-safe
  (a Celery worker with the threads pool shares it between its threads; never one per task).
- `engine_describe()`: what /healthz reports about the model, without loading it.
- `generation_stream(...)`: the conversation core's way to stream a reply; it builds SamplingParams
  here so that no other app touches model_core types.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.errors import ApplicationError, ErrorCode

logger = logging.getLogger(__name__)

PROFILES = ("r1", "zero")

_engines: dict[str, Any] = {}
_load_lock = threading.Lock()
load_count = 0  # how many times this process loaded weights (tests assert it stays at one)


def _profile_check(profile: str) -> str:
    if profile not in PROFILES:
        raise ApplicationError(ErrorCode.VALIDATION, f"Unknown engine profile {profile!r}.", field="profile")
    return profile


def engine_get(profile: str = "r1") -> Any:
    """The process-wide Engine for `profile`, loaded on first use (double-checked under a lock)."""
    _profile_check(profile)
    engine = _engines.get(profile)
    if engine is not None:
        return engine
    with _load_lock:
        engine = _engines.get(profile)
        if engine is None:
            engine = _engine_load(profile)
            _engines[profile] = engine
    return engine


def _engine_load(profile: str) -> Any:
    global load_count
    path = Path(settings.VERITY_MODEL)
    if not path.exists():
        # The path is for operators (logs), never for the customer's screen.
        logger.error("model checkpoint %s does not exist; run `python -m model_core prepare-bundled` "
                     "or set VERITY_MODEL", path)
        raise ApplicationError(
            ErrorCode.ENGINE_UNAVAILABLE,
            "The assistant's model is not available right now; the operators have been notified.",
        )
    try:
        from model_core import Engine
    except ImportError as exc:
        logger.error("model_core is not importable: %s", exc)
        raise ApplicationError(
            ErrorCode.ENGINE_UNAVAILABLE, "The assistant's model is not available right now."
        ) from exc
    logger.info("loading engine profile=%s path=%s pid=%s", profile, path, os.getpid())
    engine = Engine.load(
        str(path), profile=profile, dtype=settings.VERITY_ENGINE_DTYPE,
        device=settings.VERITY_ENGINE_DEVICE, progress=False,
    )
    load_count += 1
    return engine


def engine_loaded(profile: str = "r1") -> bool:
    return profile in _engines


def engine_describe() -> dict[str, Any]:
    """Model facts for /healthz; never loads weights (a health check must stay cheap)."""
    path = Path(settings.VERITY_MODEL)
    info: dict[str, Any] = {
        "kind": "model_core",
        "path": str(path),
        "checkpoint_present": path.exists(),
        "loaded_profiles": sorted(_engines),
        "pid": os.getpid(),
    }
    loaded = _engines.get("r1") or next(iter(_engines.values()), None)
    if loaded is not None:
        info["info"] = dict(getattr(loaded, "info", {}) or {})
    try:
        # find_spec, not import: importing model_core pulls in torch, seconds a health check cannot spend.
        info["engine_importable"] = importlib.util.find_spec("model_core") is not None
    except (ImportError, ValueError) as exc:  # report, never raise, from a probe
        info["engine_importable"] = False
        info["error"] = f"{type(exc).__name__}: {exc}"
    info["ok"] = bool(info["checkpoint_present"] and info["engine_importable"])
    return info


def engine_version(profile: str = "r1") -> str:
    """A label for the audit record: checkpoint name, profile, dtype."""
    engine = engine_get(profile)
    info = dict(getattr(engine, "info", {}) or {})
    return f"{info.get('name') or Path(settings.VERITY_MODEL).name}/{profile}/{info.get('dtype', '')}".rstrip("/")


def token_count(text: str, *, profile: str = "r1") -> int:
    return len(engine_get(profile).tokenizer.encode(text))


def chat_token_count(messages: list[dict[str, str]], *, profile: str = "r1") -> int:
    """Tokens the engine will see for `messages` rendered with its chat template (prompt budgeting)."""
    return len(engine_get(profile).render_chat(messages, add_generation_prompt=True))


def context_length(*, profile: str = "r1") -> int:
    return int(engine_get(profile).context_length)


def engine_is_r1(*, profile: str = "r1") -> bool:
    return bool((getattr(engine_get(profile), "info", {}) or {}).get("is_r1", False))


@dataclass
class Chunk:
    """One piece of a streamed generation: kind "reasoning" | "answer" | "finish"."""

    kind: str
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)


def _sampling_params(sampling: dict[str, Any], max_tokens: int) -> Any:
    from model_core import SamplingParams

    names = {f.name for f in dataclasses.fields(SamplingParams)} if dataclasses.is_dataclass(SamplingParams) \
        else set(sampling)
    kwargs = {key: value for key, value in (sampling or {}).items() if key in names}
    kwargs["max_tokens"] = max_tokens
    try:
        return SamplingParams(**kwargs)
    except ValueError as exc:
        raise ApplicationError(ErrorCode.VALIDATION, f"Bad sampling parameters: {exc}") from exc


def generation_stream(*, messages: list[dict[str, str]], sampling: dict[str, Any], max_tokens: int,
                      profile: str = "r1") -> Iterator[Chunk]:
    """Stream a chat completion as Chunks; ContextLengthError becomes a 400 ApplicationError."""
    engine = engine_get(profile)
    params = _sampling_params(sampling, max_tokens)
    from model_core.errors import ContextLengthError

    # Engine.stream is safe from several threads at once (per-request cache and sampler, shared weights),
    # so the worker's threads share one engine without a lock.
    try:
        for event in engine.stream(messages, params):
            if event.kind == "finish":
                yield Chunk("finish", finish_reason=event.finish_reason, usage=dict(event.usage or {}))
            elif event.text:
                yield Chunk(event.kind, event.text)
    except ContextLengthError as exc:
        raise ApplicationError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc)) from exc
