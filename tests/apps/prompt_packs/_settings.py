"""Minimal Django settings for the prompt-pack tests alone (SQLite in memory).

The project's own settings (`config.settings.test`, PostgreSQL) are the default; this module (with the
audit app, which the pack services write to) lets the pack tests run without the rest of the project:
`pytest tests/apps/prompt_packs --ds tests.apps.prompt_packs._settings`.
"""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[3]
SECRET_KEY = "prompt-packs-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "apps.audit",
    "apps.prompt_packs",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
VERITY_DOMAINS_DIR = BASE_DIR / "domains"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
