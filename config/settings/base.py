"""Verity settings, read from the environment through config.env (strict parsing).

VERITY_MODE selects how a turn travels:
- `embedded` (default): SQLite, an in-process worker thread and an in-memory stream bus; one command.
- `services`: PostgreSQL (psycopg 3), Redis as Celery broker and stream bus, Celery workers.
The services and the engine are the same in both; only the transport differs.
"""

from __future__ import annotations

from contextlib import suppress
from importlib.util import find_spec
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import (
    database_from_url,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_path,
    env_str,
    redis_url_check,
)

BASE_DIR = Path(__file__).resolve().parents[2]

VERITY_MODE = env_choice("VERITY_MODE", "embedded", {"embedded", "services"})
EMBEDDED = VERITY_MODE == "embedded"
DEBUG = env_bool("DEBUG", EMBEDDED)

VERITY_DATA_DIR = env_path("VERITY_DATA_DIR", Path("var"), base=BASE_DIR)
VERITY_MODEL = str(env_path("VERITY_MODEL", VERITY_DATA_DIR / "models" / "smollm2-135m-instruct", base=BASE_DIR))
# The R1 profile serves the bundled base plus the domain-tuned LoRA adapter kept in the repository
# (`python -m model_core train --recipe r1-domain` writes it; issue 9); Zero always serves the base.
# "none" serves the base under R1 too. The default applies only to the bundled base it was trained on.
_R1_ADAPTER_DEFAULT = BASE_DIR / "model_core" / "adapters" / "r1-domain" / "adapter.safetensors"
_R1_ADAPTER = env_str("VERITY_R1_ADAPTER", "")
if _R1_ADAPTER.lower() == "none":
    VERITY_R1_ADAPTER = ""
elif _R1_ADAPTER:
    VERITY_R1_ADAPTER = str(env_path("VERITY_R1_ADAPTER", Path(), base=BASE_DIR))
elif Path(VERITY_MODEL) == BASE_DIR / "var" / "models" / "smollm2-135m-instruct" and _R1_ADAPTER_DEFAULT.is_file():
    VERITY_R1_ADAPTER = str(_R1_ADAPTER_DEFAULT)
else:
    VERITY_R1_ADAPTER = ""
VERITY_ENGINE_DTYPE = env_choice("VERITY_ENGINE_DTYPE", "float32", {"float32", "bfloat16"})
VERITY_ENGINE_DEVICE = env_choice("VERITY_ENGINE_DEVICE", "cpu", {"cpu", "cuda"})
# The R1 profile's weights: "int8" (weight-only, per channel; on CPU about 1.9x faster batch-1 decode than
# float32 at +0.4% perplexity, half the memory) or "none" (the VERITY_ENGINE_DTYPE weights). Default int8 on
# CPU, none on CUDA (its int8 path dequantises on the fly). Zero, the plain reference, is never quantised.
VERITY_ENGINE_QUANTIZE = env_choice("VERITY_ENGINE_QUANTIZE", "int8" if VERITY_ENGINE_DEVICE == "cpu" else "none",
                                    {"int8", "none"})
VERITY_MAX_MESSAGE_CHARS = env_int("VERITY_MAX_MESSAGE_CHARS", 8000, minimum=1, maximum=1_000_000)
VERITY_MAX_NEW_TOKENS = env_int("VERITY_MAX_NEW_TOKENS", 512, minimum=1, maximum=32_768)
# A reply pending or streaming for longer than this, with no live task, is re-enqueued by the reconciler.
VERITY_RECONCILE_AFTER_S = env_int("VERITY_RECONCILE_AFTER_S", 120, minimum=1)
VERITY_STREAM_TTL_S = env_int("VERITY_STREAM_TTL_S", 3600, minimum=10)
VERITY_STREAM_PREFIX = env_str("VERITY_STREAM_PREFIX", "verity:")
VERITY_SSE_HEARTBEAT_S = env_int("VERITY_SSE_HEARTBEAT_S", 15, minimum=1)
VERITY_DOMAINS_DIR = env_path("VERITY_DOMAINS_DIR", Path("domains"), base=BASE_DIR)
# Partner API (issue 7) and console (operations) knobs; empty pepper / token mean "not configured".
VERITY_APIKEY_PEPPER = env_str("VERITY_APIKEY_PEPPER", "")
VERITY_PARTNER_TIMEOUT_S = env_int("VERITY_PARTNER_TIMEOUT_S", 300, minimum=1)
VERITY_METRICS_TOKEN = env_str("VERITY_METRICS_TOKEN", "")

_dev_secret = "django-insecure-verity-embedded-development-only-key-change-me"
SECRET_KEY = env_str("SECRET_KEY", _dev_secret if (DEBUG or EMBEDDED) else None)
if SECRET_KEY is None:
    raise ImproperlyConfigured("SECRET_KEY must be set when neither DEBUG nor VERITY_MODE=embedded")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"] if DEBUG or EMBEDDED else [])

_default_db = f"sqlite:///{VERITY_DATA_DIR / 'verity.sqlite3'}" if EMBEDDED else None
# PostgreSQL connections per process, pooled (0: connect per request/task, as before the pool).
VERITY_DB_POOL = env_int("VERITY_DB_POOL", 8, minimum=0, maximum=1000)
DATABASES = {"default": database_from_url("DATABASE_URL", env_str("DATABASE_URL", _default_db), base=BASE_DIR,
                                          pool_size=VERITY_DB_POOL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A fresh clone has no var/ yet; SQLite cannot create the folder for its file.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)

REDIS_URL = redis_url_check("REDIS_URL", env_str("REDIS_URL", "redis://127.0.0.1:6379/0"))

_OWN_APPS = ["apps.core", "apps.accounts", "apps.audit", "apps.inference", "apps.conversations"]
# Apps built in later issues join the project as soon as their package exists.
_LATER_APPS = ["apps.safety", "apps.prompt_packs", "apps.apikeys", "apps.partner_api", "apps.console"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    *_OWN_APPS,
    *[app for app in _LATER_APPS if find_spec(app) is not None],
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.ApplicationErrorMiddleware",
    # Innermost: every route that makes the model speak passes the safety pipeline (fail closed).
    "apps.safety.middleware.SafetyGuardMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/chat/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STATIC_ROOT = VERITY_DATA_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the chat JS reads it to send X-CSRFToken
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "apps.core.exceptions.drf_exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
}

# Celery: used only in services mode; embedded mode runs the same task body on a worker thread.
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env_str("VERITY_CELERY_QUEUE", "verity")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("VERITY_VISIBILITY_TIMEOUT_S", 3600, minimum=30)}
CELERY_BEAT_SCHEDULE = {
    "reconcile-replies": {
        "task": "apps.conversations.tasks.reconcile_replies",
        "schedule": float(env_int("VERITY_RECONCILE_EVERY_S", 60, minimum=1)),
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_choice(
        "LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"})},
}
CSRF_FAILURE_VIEW = "apps.core.views.csrf_failure"
# Under uvicorn there is no runserver to serve static files: WhiteNoise serves them straight from the
# app folders in DEBUG, and from STATIC_ROOT (collectstatic) otherwise.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
with suppress(OSError):  # WhiteNoise warns about a missing STATIC_ROOT before the first collectstatic
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
