"""Abstract base models every Verity table builds on: a UUID primary key and creation/update times.

UUIDs keep ids unguessable in URLs and stable across databases (SQLite in embedded mode, PostgreSQL
in services mode), and let an id be handed to a Celery task before anyone looks it up.
"""

from __future__ import annotations

import uuid

from django.db import models


class BaseModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ("created_at",)
