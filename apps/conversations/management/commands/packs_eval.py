"""`manage.py packs_eval DOMAIN [--limit N] [--max-tokens N]`: a pack's evaluation set, real model and pipeline.

Prints one line per case (PASS/FAIL, kind, id, what the pipeline did, the start of the answer) and the
totals per kind. `--strict` exits with status 1 when any case fails (a publishing gate in CI).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.conversations.evaluation import KINDS, CaseResult, pack_eval_run, totals
from apps.core.errors import ApplicationError


class Command(BaseCommand):
    help = "Run a domain pack's evaluation set through the real engine and safety pipeline."

    def add_arguments(self, parser) -> None:
        parser.add_argument("domain")
        parser.add_argument("--limit", type=int, default=None, help="at most N cases of each kind")
        parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per answer (default 64)")
        parser.add_argument("--profile", default="r1", choices=["r1", "zero"])
        parser.add_argument("--strict", action="store_true", help="exit 1 when any case fails")

    def handle(self, *args, **options) -> None:
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        if options["max_tokens"] < 1:
            raise CommandError("--max-tokens must be at least 1")
        results: list[CaseResult] = []

        def show(result: CaseResult) -> None:
            did = result.action + (f":{result.escalation_kind}" if result.escalation_kind else "")
            did += " output-blocked" if result.blocked else ""
            did += " disclaimed" if result.disclaimed else ""
            answer = " ".join(result.answer.split())[:70]
            self.stdout.write(f"{'PASS' if result.passed else 'FAIL'}  {result.kind:<13} {result.case_id:<32} "
                              f"{did:<28} {result.seconds:5.1f}s  {answer}")
            self.stdout.flush()

        try:
            results = list(pack_eval_run(domain=options["domain"], limit=options["limit"],
                                         max_tokens=options["max_tokens"], profile=options["profile"],
                                         on_result=show))
        except ApplicationError as exc:
            raise CommandError(f"{exc.code.value}: {exc.message}") from exc
        summary = totals(results)
        self.stdout.write("")
        for kind in (*KINDS, "all"):
            counts = summary[kind]
            self.stdout.write(f"{kind:<14} {counts['passed']:>3}/{counts['total']:<3} passed")
        failed = summary["all"]["total"] - summary["all"]["passed"]
        self.stdout.write(f"TOTAL {options['domain']}: {summary['all']['passed']} passed, {failed} failed")
        if options["strict"] and failed:
            raise CommandError(f"{failed} evaluation case(s) failed")
