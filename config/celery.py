"""The Celery application (services mode): broker Redis, tasks discovered from the Django apps.

Run a worker with the threads pool so that the engine is loaded once per worker process and shared
by its threads: `celery -A config worker --pool threads -c 4`; the reconciler runs under
`celery -A config beat`.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("verity")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
