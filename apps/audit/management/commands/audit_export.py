"""`manage.py audit_export [--output FILE]` writes the chain as JSON lines (audited);
`manage.py audit_export --verify FILE [--no-seals]` verifies a chain from such a file (exit 1 if broken)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.export import ExportFormatError, audit_file_verify, audit_records_export


class Command(BaseCommand):
    help = "Export the audit chain as JSON lines, or verify a chain from an exported file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument("--verify", metavar="FILE", help="verify the chain in FILE instead of exporting")
        parser.add_argument("--no-seals", action="store_true",
                            help="with --verify: skip the seal check (for a verifier without the audit key)")
        parser.add_argument("--actor", default="system", help="who exports (recorded in the chain)")

    def handle(self, *args, **options) -> None:
        if options["verify"]:
            try:
                result = audit_file_verify(path=options["verify"], check_seals=not options["no_seals"])
            except (OSError, ExportFormatError) as exc:
                raise CommandError(f"cannot verify {options['verify']}: {exc}") from exc
            if not result.ok:
                raise CommandError(str(result))
            self.stdout.write(str(result))
            return
        if options["output"]:
            with Path(options["output"]).open("w", encoding="utf-8") as handle:
                count = audit_records_export(out=handle, actor=options["actor"])
            self.stderr.write(f"exported {count} audit records to {options['output']}")
        else:
            audit_records_export(out=self.stdout, actor=options["actor"])
