"""App config for the partner REST API (/v1)."""

from django.apps import AppConfig


class PartnerApiConfig(AppConfig):
    name = "apps.partner_api"
    label = "partner_api"
    verbose_name = "Partner API"
