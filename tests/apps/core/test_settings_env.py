"""Settings from the environment: strict parsing, the production profile, the modes' defaults."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env

REPO = Path(__file__).resolve().parents[3]
CLEAN = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}


def _settings_probe(extra: dict[str, str], module: str = "config.settings", code: str = "") -> subprocess.CompletedProcess:
    script = "import django; django.setup(); from django.conf import settings as s; " + (
        code or "print(s.VERITY_MODE, s.DATABASES['default']['ENGINE'], s.DEBUG)")
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          env={**CLEAN, "DJANGO_SETTINGS_MODULE": module, **extra}, timeout=120)


@pytest.mark.parametrize(("name", "value", "parser"), [
    ("DEBUG", "ture", lambda: env.env_bool("DEBUG", False)),
    ("VERITY_MAX_MESSAGE_CHARS", "lots", lambda: env.env_int("VERITY_MAX_MESSAGE_CHARS", 8000)),
    ("VERITY_MAX_MESSAGE_CHARS", "0", lambda: env.env_int("VERITY_MAX_MESSAGE_CHARS", 8000, minimum=1)),
    ("VERITY_MODE", "service", lambda: env.env_choice("VERITY_MODE", "embedded", {"embedded", "services"})),
])
def test_bad_values_name_the_variable(monkeypatch, name, value, parser):
    monkeypatch.setenv(name, value)
    with pytest.raises(ImproperlyConfigured, match=name):
        parser()


def test_database_urls_parse_for_sqlite_and_postgres(tmp_path):
    sqlite = env.database_from_url("DATABASE_URL", "sqlite:///var/x.sqlite3", base=tmp_path)
    assert sqlite["NAME"] == str(tmp_path / "var" / "x.sqlite3")
    pg = env.database_from_url("DATABASE_URL", "postgres://u:p%40ss@db.internal:6543/verity?sslmode=require",
                               base=tmp_path)
    assert (pg["ENGINE"], pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "django.db.backends.postgresql", "u", "p@ss", "db.internal", "6543", "verity")
    assert pg["OPTIONS"] == {"sslmode": "require"}
    assert pg["CONN_MAX_AGE"] == 0  # ASGI: a persistent connection per request thread leaks (see config/env.py)
    pooled = env.database_from_url("DATABASE_URL", "postgres://u@db:5432/verity?sslmode=require", base=tmp_path,
                                   pool_size=8)
    assert pooled["OPTIONS"] == {"sslmode": "require", "pool": {"min_size": 1, "max_size": 8, "timeout": 30}}
    assert pooled["CONN_MAX_AGE"] == 0  # Django's pool requires it
    assert "pool" not in env.database_from_url("DATABASE_URL", "sqlite:///x.db", base=tmp_path, pool_size=8)["OPTIONS"]
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env.database_from_url("DATABASE_URL", "mysql://x/y", base=tmp_path)
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env.database_from_url("DATABASE_URL", "postgres://host:99999/db", base=tmp_path)


def test_embedded_default_uses_sqlite_and_a_bad_mode_stops_startup(tmp_path):
    ok = _settings_probe({"VERITY_DATA_DIR": str(tmp_path)})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.split() == ["embedded", "django.db.backends.sqlite3", "True"]
    bad = _settings_probe({"VERITY_MODE": "service", "VERITY_DATA_DIR": str(tmp_path)})
    assert bad.returncode != 0 and "VERITY_MODE" in bad.stderr


def test_services_mode_refuses_to_start_without_a_secret_key():
    result = _settings_probe({"VERITY_MODE": "services", "DEBUG": "0",
                              "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"})
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_production_settings_pass_check_deploy():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=REPO,
        capture_output=True, text=True, timeout=120,
        env={**CLEAN, "DJANGO_SETTINGS_MODULE": "config.settings.production",
             "SECRET_KEY": secrets.token_urlsafe(50)[:50], "ALLOWED_HOSTS": "verity.example.com"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("secret", ["", "short-secret", "x" * 60])
def test_production_refuses_a_missing_or_weak_secret(secret):
    result = _settings_probe({"SECRET_KEY": secret, "ALLOWED_HOSTS": "verity.example.com"},
                             module="config.settings.production")
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr


def test_docker_compose_sets_what_the_settings_read():
    compose = (REPO / "docker-compose.yml").read_text()
    for needle in ("VERITY_MODE: services", "DATABASE_URL: postgres://", "REDIS_URL: redis://",
                   "uvicorn config.asgi:application", "--pool threads", "celery -A config beat",
                   "healthcheck", "SECRET_KEY"):
        assert needle in compose, needle
