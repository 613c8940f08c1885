"""App configuration for prompt packs: versioned, governed domain packs loaded from `domains/`."""

from django.apps import AppConfig


class PromptPacksConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "apps.prompt_packs"
    label = "prompt_packs"
    verbose_name = "Prompt packs"
