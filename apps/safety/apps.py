"""Django app config for the safety pipeline (label `safety`)."""

from django.apps import AppConfig


class SafetyConfig(AppConfig):
    name = "apps.safety"
    label = "safety"
    verbose_name = "Safety pipeline"
    default_auto_field = "django.db.models.BigAutoField"
