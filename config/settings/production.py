"""Production settings: services mode, HTTPS only, no development secret; `check --deploy` passes.

Requires SECRET_KEY (at least 50 characters, not the development key) and ALLOWED_HOSTS.
"""

from __future__ import annotations

import os

os.environ.setdefault("VERITY_MODE", "services")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("DATABASE_URL", "postgres://verity@127.0.0.1:5432/verity")

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

from config.env import env_bool, env_int  # noqa: E402
from config.settings.base import *  # noqa: E402,F401,F403
from config.settings.base import ALLOWED_HOSTS, DEBUG, SECRET_KEY, _dev_secret  # noqa: E402

if DEBUG:
    raise ImproperlyConfigured("DEBUG must be off in config.settings.production")
if _dev_secret == SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("SECRET_KEY must be a random value of at least 50 characters in production")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the public host(s) in production")

SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Behind a TLS-terminating proxy (nginx, a load balancer) that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
