"""Verity's Django project shell; importing it makes the Celery app available as `config.celery_app`."""

from config.celery import app as celery_app

__all__ = ["celery_app"]
