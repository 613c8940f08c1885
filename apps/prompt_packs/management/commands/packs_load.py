"""`manage.py packs_load [--root domains] [--check]`: validate the domain packs and publish changed ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.prompt_packs.schema import PackValidationError, pack_dirs, pack_validate
from apps.prompt_packs.selectors import pack_published_get
from apps.prompt_packs.services import packs_load


class Command(BaseCommand):
    help = "Validate every pack under --root and publish a new version of each pack whose content changed."

    def add_arguments(self, parser: CommandParser) -> None:
        default = getattr(settings, "VERITY_DOMAINS_DIR", Path(settings.BASE_DIR) / "domains")
        parser.add_argument(
            "--root", type=Path, default=Path(default), help=f"packs folder (default {default})"
        )
        parser.add_argument("--check", action="store_true", help="validate only; write nothing")

    def handle(self, *args: Any, root: Path, check: bool, **options: Any) -> None:
        try:
            folders = pack_dirs(root)
            if not folders:
                raise CommandError(f"no packs found under {root} (expected <domain>/pack.yaml)")
            if check:
                for folder in folders:
                    data = pack_validate(folder)
                    self.stdout.write(f"{data['domain']}: valid ({len(data['evals'])} eval cases)")
                return
            created = {version.domain: version for version in packs_load(root=root)}
        except PackValidationError as exc:
            # CommandError exits with status 1 and prints the message: file, field, problem.
            raise CommandError(f"invalid pack: {exc}") from exc
        for folder in folders:
            version = created.get(folder.name) or pack_published_get(domain=folder.name)
            state = "published (new)" if folder.name in created else "unchanged"
            self.stdout.write(
                f"{version.domain}: v{version.version} {version.label} {state} "
                f"digest {version.digest[:12]} ({len(version.evals)} eval cases)"
            )
