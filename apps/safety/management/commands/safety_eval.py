"""`manage.py safety_eval --input FILE.jsonl --output OUT.jsonl [--engine stub|real]`.

Reads lines `{"id", "domain", "text"}` (optionally `"set"`), runs each through the safety pipeline
and a model, writes `{"id", "action", "disclaimer", "redacted", "rules"}` per line, then prints the
rates per set and the targets of issue 6. `--engine stub` (the default) uses a model that complies
with everything, so the figures measure the filter alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.jsonl import JsonLinesError, jsonl_rows
from apps.safety.evaluation import evaluate_row, load_packs, stub_reply, summarise, target_lines


def _real_reply(max_tokens: int):
    """The configured engine. Imported by dotted path at run time: this command is a CLI entry point,
    and the safety app itself never depends on the inference app (its sibling in the layer order)."""
    from django.utils.module_loading import import_string

    engine = import_string("apps.inference.services.engine_get")()
    params = import_string("model_core.SamplingParams")(max_tokens=max_tokens, temperature=0.6, top_p=0.95)

    def reply(text: str, system_prompt: str, canary: str):
        messages = [{"role": "user", "content": f"{system_prompt}\n[{canary}]\n\n{text}"}]
        for event in engine.stream(messages, params):
            if event.kind in ("reasoning", "answer") and event.text:
                yield event.kind, event.text

    return reply


class Command(BaseCommand):
    help = "Evaluate the safety pipeline on a JSON-lines file and print rates per set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--input", required=True, type=Path, help="JSON lines {id, domain, text[, set]}")
        parser.add_argument("--output", required=True, type=Path, help="where to write one result per line")
        parser.add_argument("--engine", choices=("stub", "real"), default="stub")
        parser.add_argument("--max-tokens", type=int, default=128, help="real engine only")
        parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N lines")

    def handle(self, *args, **options) -> None:
        source: Path = options["input"]
        if not source.is_file():
            raise CommandError(f"{source} does not exist")
        rows = []
        try:
            for number, row in jsonl_rows(source):
                if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                    raise CommandError(f"{source}:{number}: each line needs a string field 'text'")
                rows.append(row)
        except JsonLinesError as exc:
            raise CommandError(f"{source}:{exc.line_no}: {exc.reason}") from exc
        if options["limit"]:
            rows = rows[: options["limit"]]
        default_root = Path(getattr(settings, "BASE_DIR", Path(__file__).resolve().parents[4])) / "domains"
        root = Path(getattr(settings, "VERITY_DOMAINS_DIR", default_root))
        packs = load_packs(root)
        reply = stub_reply if options["engine"] == "stub" else _real_reply(options["max_tokens"])
        pipelines: dict = {}
        results = []
        options["output"].parent.mkdir(parents=True, exist_ok=True)
        with options["output"].open("w") as out:
            for index, row in enumerate(rows, start=1):
                result = evaluate_row(row, packs, reply, pipelines)
                results.append(result)
                public = {k: result[k] for k in ("id", "action", "disclaimer", "redacted", "rules")}
                out.write(json.dumps(public) + "\n")
                if index % 250 == 0:
                    self.stderr.write(f"  {index}/{len(rows)}")
        summary = summarise(rows, results)
        self.stdout.write(f"{'set':<12} {'n':>5} {'allow%':>7} {'block%':>7} {'escal%':>7} {'discl%':>7} "
                          f"{'canary':>9}")
        for name, s in sorted(summary.items()):
            disclaimer = "-" if s["disclaimer_on_allowed_pct"] is None else f"{s['disclaimer_on_allowed_pct']:.1f}"
            self.stdout.write(f"{name:<12} {s['n']:>5} {s['allowed_pct']:>7.2f} {s['blocked_pct']:>7.2f} "
                              f"{s['escalated_pct']:>7.2f} {disclaimer:>7} "
                              f"{s['canary_leaked']:>3}/{s['canary_attempts']:<5}")
        for line in target_lines(summary):
            self.stdout.write(line)
