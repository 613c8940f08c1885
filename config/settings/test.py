"""Test settings: real PostgreSQL and real Redis by default, isolated per test run.

Several people and CI jobs share one PostgreSQL and one Redis, so every pytest process gets its own
test database name, Celery queue and stream key prefix (all derived from its pid). Set
TEST_DATABASE_URL=sqlite:///... to run the suite on SQLite instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("VERITY_MODE", "services")
os.environ.setdefault("DATABASE_URL", os.environ.get("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/verity"))
os.environ.setdefault("SECRET_KEY", "test-only-secret-never-used-outside-the-test-suite-0123456789")
_RUN = f"t{os.getpid()}"
os.environ.setdefault("VERITY_CELERY_QUEUE", f"verity-test-{_RUN}")
os.environ.setdefault("VERITY_STREAM_PREFIX", f"verity:test:{_RUN}:")

from config.settings.base import *  # noqa: E402,F401,F403
from config.settings.base import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    DATABASES["default"]["TEST"] = {"NAME": f"test_verity_{_RUN}"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # speed only; never in production
VERITY_TEST_RUN = _RUN
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
