"""ASGI entry point served by uvicorn: `uvicorn config.asgi:application`.

In the embedded mode the in-process reply worker is started here, inside the server process, so one
command serves the chat and generates replies.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from apps.conversations.dispatch import embedded_worker_start  # noqa: E402  (needs the app registry)

embedded_worker_start()
