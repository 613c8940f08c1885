"""Reachability probes for GET /healthz: the database, the broker and the model.

Each probe returns a dict with at least `{"kind", "ok"}` and never raises: a probe that fails reports
`ok: false` with the error, so the health endpoint itself stays up to say what is down.
The model probe lives in apps.inference (the only app that knows the engine) and is looked up through
the VERITY_MODEL_PROBE setting, which keeps this kernel free of upward imports.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils.module_loading import import_string


def _timed(probe: dict[str, Any], started: float) -> dict[str, Any]:
    probe["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return probe


def database_probe() -> dict[str, Any]:
    started = time.perf_counter()
    vendor = connection.vendor
    info: dict[str, Any] = {"kind": vendor, "name": str(connection.settings_dict.get("NAME", ""))}
    if vendor == "postgresql":
        info["host"] = connection.settings_dict.get("HOST") or "local socket"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        info["ok"] = True
    except Exception as exc:  # a probe reports, it never raises
        info.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    return _timed(info, started)


def broker_probe() -> dict[str, Any]:
    started = time.perf_counter()
    if settings.VERITY_MODE == "embedded":
        return _timed({"kind": "in-process", "ok": True, "detail": "worker thread + memory stream bus"}, started)
    import redis

    url = settings.REDIS_URL
    info: dict[str, Any] = {"kind": "redis", "url": _redact(url)}
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        info["ok"] = bool(client.ping())
    except Exception as exc:
        info.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    return _timed(info, started)


def model_probe() -> dict[str, Any]:
    started = time.perf_counter()
    path = getattr(settings, "VERITY_MODEL_PROBE", "apps.inference.services.engine_describe")
    try:
        info = dict(import_string(path)())
    except Exception as exc:
        info = {"kind": "model_core", "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return _timed(info, started)


def health_report() -> dict[str, Any]:
    report = {"database": database_probe(), "broker": broker_probe(), "model": model_probe()}
    healthy = all(part.get("ok") for part in report.values())
    return {"status": "ok" if healthy else "degraded", "mode": settings.VERITY_MODE, **report}


def _redact(url: str) -> str:
    """Hide a password in a broker URL before it leaves the process."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
