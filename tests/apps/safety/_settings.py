"""Minimal Django settings for the safety tests alone (no database needed).

The project's settings (`config.settings.test`) are the default; this lets the safety tests run
without the rest of the project: `pytest tests/apps/safety --ds tests.apps.safety._settings`.
"""

SECRET_KEY = "safety-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "apps.safety"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
VERITY_MAX_MESSAGE_CHARS = 8000
