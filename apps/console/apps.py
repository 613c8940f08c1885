"""Django app config of the console."""

from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.console"
    label = "console"
    verbose_name = "Console"
