"""App config for partner applications and their API keys."""

from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"
    verbose_name = "Partner apps and API keys"
