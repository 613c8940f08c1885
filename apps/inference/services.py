"""Engine lifecycle and generation for the rest of Verity (the one seam to model_core).

- `engine_get(profile)`: one Engine per profile per process, loaded lazily on first use, thread-safe
  (a Celery worker with the threads pool shares it between its threads; never one per task).
- `engine_describe()`: what /healthz reports about the model, without loading it.
- `engine_quantization(profile)`: the weight quantisation a profile loads with (VERITY_ENGINE_QUANTIZE,
  R1 only); `engine_version(profile)`: the audit label (checkpoint/profile/dtype[/int8][+adapter]).
- `generation_stream(...)`: the conversation core's way to stream a reply; it builds SamplingParams
  here so that no other app touches model_core types.
- `sampling_validate(overrides)`: a request's sampling overrides checked up front (before a turn is
  stored), `response_format` included, without loading any weights.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import os
import threading
from collections import OrderedDict
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
    adapter = settings.VERITY_R1_ADAPTER if profile == "r1" else ""  # Zero always serves the untouched base
    if adapter and not Path(adapter).is_file():
        logger.error("VERITY_R1_ADAPTER %s does not exist; set it to an adapter file or to 'none'", adapter)
        raise ApplicationError(
            ErrorCode.ENGINE_UNAVAILABLE,
            "The assistant's model is not available right now; the operators have been notified.",
        )
    quantize = engine_quantization(profile)
    logger.info("loading engine profile=%s path=%s adapter=%s quantize=%s pid=%s", profile, path, adapter or "-",
                quantize or "-", os.getpid())
    engine = Engine.load(
        str(path), profile=profile, dtype=settings.VERITY_ENGINE_DTYPE,
        device=settings.VERITY_ENGINE_DEVICE, progress=False, adapter=adapter or None, quantize=quantize,
    )
    load_count += 1
    return engine


def engine_quantization(profile: str = "r1") -> str | None:
    """The weight quantisation `profile` is loaded with: VERITY_ENGINE_QUANTIZE for R1 ("int8" or None);
    always None for Zero, the float reference the arena compares against."""
    _profile_check(profile)
    if profile != "r1" or settings.VERITY_ENGINE_QUANTIZE == "none":
        return None
    return settings.VERITY_ENGINE_QUANTIZE


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
    """A label for the audit record: checkpoint name, profile, dtype, weight quantisation if any, adapter
    if any: `SmolLM2-135M-Instruct/r1/float32/int8+r1-domain`, `SmolLM2-135M-Instruct/zero/float32`."""
    engine = engine_get(profile)
    info = dict(getattr(engine, "info", {}) or {})
    label = f"{info.get('name') or Path(settings.VERITY_MODEL).name}/{profile}/{info.get('dtype', '')}".rstrip("/")
    if info.get("quantization"):
        label = f"{label}/{info['quantization']}"
    adapter = info.get("adapter")
    return f"{label}+{Path(adapter).parent.name or Path(adapter).stem}" if adapter else label


def token_count(text: str, *, profile: str = "r1") -> int:
    return len(engine_get(profile).tokenizer.encode(text))


_COUNT_CACHE_SIZE = 1024
_count_cache: OrderedDict[tuple[Any, ...], int] = OrderedDict()
_count_lock = threading.Lock()


def chat_token_count(messages: list[dict[str, str]], *, profile: str = "r1") -> int:
    """Tokens the engine will see for `messages` rendered with its chat template (prompt budgeting).

    Memoised (bounded LRU): prompt budgeting counts the same window more than once per turn, and the
    template render plus tokenisation of a pack's instructions is the costly part.
    """
    engine = engine_get(profile)
    key = (profile, id(engine), *(tuple(sorted(m.items())) for m in messages))
    try:
        with _count_lock:
            hit = _count_cache.get(key)
            if hit is not None:
                _count_cache.move_to_end(key)
                return hit
    except TypeError:  # an unhashable value (content parts): count it without the cache
        return len(engine.render_chat(messages, add_generation_prompt=True))
    count = len(engine.render_chat(messages, add_generation_prompt=True))
    with _count_lock:
        _count_cache[key] = count
        if len(_count_cache) > _COUNT_CACHE_SIZE:
            _count_cache.popitem(last=False)
    return count


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


SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "stop", "seed", "response_format")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bad(field_name: str, rule: str) -> ApplicationError:
    return ApplicationError(ErrorCode.VALIDATION, f"'{field_name}' must be {rule}.", field=field_name)


def sampling_validate(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A request's sampling overrides, checked as the engine will check them; unknown keys are refused.

    Raises ApplicationError(VALIDATION, field=<key>). `response_format` json_object / json_schema is
    compiled here (grammar only, no vocabulary or weights), so a schema the engine cannot enforce is a
    400 before anything is stored; 'text' is the same as none.
    """
    clean: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in SAMPLING_KEYS:
            raise ApplicationError(ErrorCode.VALIDATION, f"Unknown sampling parameter {key!r}.", field=key)
        if key == "temperature" and not (_is_number(value) and 0 <= value <= 2):
            raise _bad(key, "a number in [0, 2]")
        if key == "top_p" and not (_is_number(value) and 0 < value <= 1):
            raise _bad(key, "a number in (0, 1]")
        if key == "max_tokens" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise _bad(key, "an integer >= 1")
        if key == "seed" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise _bad(key, "an integer")
        if key == "stop":
            value = [value] if isinstance(value, str) else value
            if not (isinstance(value, list) and len(value) <= 4 and all(isinstance(v, str) and v for v in value)):
                raise _bad(key, "a non-empty string or a list of at most 4 non-empty strings")
            value = list(value)
            if not value:
                continue
        if key == "response_format":
            value = response_format_check(value)
            if value is None:
                continue
        clean[key] = value
    return clean


def response_format_check(response_format: Any) -> dict[str, Any] | None:
    """None for 'text'; the format itself when the engine can enforce it; ValidationError otherwise."""
    if not isinstance(response_format, dict) or not isinstance(response_format.get("type"), str):
        raise _bad("response_format", "an object with a string 'type'")
    kind = response_format["type"]
    if kind == "text":
        return None
    from model_core.constrained_grammar import Grammar
    from model_core.constrained_schema import compile_json_object, compile_json_schema

    try:
        if kind == "json_object":
            compile_json_object(Grammar())
        elif kind == "json_schema":
            spec = response_format.get("json_schema")
            if not isinstance(spec, dict) or "schema" not in spec:
                raise ValueError("response_format.json_schema must be an object with a 'schema'")
            compile_json_schema(Grammar(), spec["schema"])
        else:
            raise ValueError(f"unsupported response_format type {kind!r} (expected 'text', 'json_object' "
                             "or 'json_schema')")
    except Exception as exc:  # noqa: BLE001 - partner input: any failure to compile it is a refusal, not a 500
        raise ApplicationError(ErrorCode.VALIDATION, f"response_format cannot be enforced: {exc}",
                               field="response_format") from exc
    return response_format


def _sampling_params(sampling: dict[str, Any], max_tokens: int) -> Any:
    from model_core import SamplingParams

    names = {f.name for f in dataclasses.fields(SamplingParams)} if dataclasses.is_dataclass(SamplingParams) \
        else set(sampling)
    kwargs = {key: value for key, value in (sampling or {}).items() if key in names}
    kwargs["max_tokens"] = max_tokens
    if kwargs.get("response_format") is not None and kwargs["response_format"].get("type") == "text":
        kwargs["response_format"] = None
    try:
        return SamplingParams(**kwargs)
    except ValueError as exc:
        field_name = str(exc).split(" ", 1)[0] if str(exc).split(" ", 1)[0] in names else None
        raise ApplicationError(ErrorCode.VALIDATION, f"Bad sampling parameters: {exc}", field=field_name) from exc


def generation_stream(*, messages: list[dict[str, str]], sampling: dict[str, Any], max_tokens: int,
                      profile: str = "r1") -> Iterator[Chunk]:
    """Stream a chat completion as Chunks.

    `sampling` holds SamplingParams fields (temperature, top_p, seed, stop, response_format, ...);
    unknown keys are ignored, `max_tokens` is the argument. ContextLengthError becomes
    CONTEXT_LENGTH_EXCEEDED; a response_format the engine refuses (its ValueError, raised before any
    compute) becomes VALIDATION with field "response_format".
    """
    engine = engine_get(profile)
    params = _sampling_params(sampling, max_tokens)
    from model_core.errors import ContextLengthError

    # Engine.stream is safe from several threads at once (per-request cache and sampler, shared weights),
    # so the worker's threads share one engine without a lock.
    try:
        events = engine.stream(messages, params)
    except ContextLengthError as exc:
        raise ApplicationError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc)) from exc
    except ValueError as exc:  # the constraint is built up front: an unenforceable format fails here
        raise ApplicationError(ErrorCode.VALIDATION, f"response_format cannot be enforced: {exc}",
                               field="response_format") from exc
    try:
        for event in events:
            if event.kind == "finish":
                yield Chunk("finish", finish_reason=event.finish_reason, usage=dict(event.usage or {}))
            elif event.text:
                yield Chunk(event.kind, event.text)
    finally:
        close = getattr(events, "close", None)
        if close is not None:  # frees the engine's slot when the caller stops early (cancel, disconnect)
            close()
