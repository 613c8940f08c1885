"""Strict environment parsing for settings: every bad value fails with ImproperlyConfigured naming it.

Settings read the environment only through these helpers, so that a typo in a deployment
(`DEBUG=ture`, `VERITY_MODE=service`, a malformed `DATABASE_URL`) stops the process at start-up with
a message that names the variable instead of silently falling back to a default.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_UNSET = object()


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: Any = _UNSET) -> str:
    """A string variable; without a default it is required."""
    value = _raw(name)
    if value is None or value == "":
        if default is _UNSET:
            raise ImproperlyConfigured(f"{name} must be set")
        return default
    return value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false, yes/no, on/off), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, got {number}")
    return number


def env_choice(name: str, default: str, choices: Iterable[str]) -> str:
    allowed = sorted(choices)
    value = env_str(name, default)
    if value not in allowed:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_path(name: str, default: Path, *, base: Path) -> Path:
    """A filesystem path; relative values are taken relative to `base` (the repository root)."""
    value = _raw(name)
    path = Path(value) if value else default
    return path if path.is_absolute() else (base / path)


def database_from_url(name: str, url: str, *, base: Path, pool_size: int = 0) -> dict[str, Any]:
    """Turn `sqlite:///relative.db`, `sqlite:////abs.db` or `postgres://user:pw@host:port/db` into DATABASES."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        raw_path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not raw_path:
            raise ImproperlyConfigured(f"{name} names no SQLite file: {url!r}")
        path = Path(raw_path)
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(path if path.is_absolute() else base / path),
            # SQLite serialises writers; a generous timeout lets the worker thread and requests share it.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        }
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        db_name = unquote(parts.path.lstrip("/"))
        if not db_name:
            raise ImproperlyConfigured(f"{name} names no database: {url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ImproperlyConfigured(f"{name} has a bad port: {url!r}") from None
        options: dict[str, Any] = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if pool_size:
            # A bounded pool per process (psycopg_pool): a request or task borrows a connection and gives
            # it back when Django closes it, instead of connecting anew (~5 ms and a server process each
            # time), and no burst of requests can open more than `pool_size` connections.
            options["pool"] = {"min_size": 1, "max_size": pool_size, "timeout": 30}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db_name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(port or ""),
            "OPTIONS": options,
            # No persistent connections: under ASGI every request's sync code runs in a thread of its
            # own, so a connection kept for reuse is never reused and 32 concurrent partner requests
            # exhausted PostgreSQL's 100 connections within seconds (benchmarks/api.py). Django's
            # documentation asks for CONN_MAX_AGE = 0 under ASGI for this reason.
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": True,
        }
    raise ImproperlyConfigured(f"{name} must start with sqlite:// or postgres://, got {url!r}")


def redis_url_check(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must look like redis://host:6379/0, got {url!r}")
    return url
