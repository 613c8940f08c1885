"""WSGI entry point (the ASGI one in asgi.py is preferred: SSE streams need it)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()
