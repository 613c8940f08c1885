"""JSON Lines files read one record at a time, with the line number of anything that is not JSON.

Used by the commands that take JSONL from operators (`safety_eval --input`, `audit_export --verify`):
each wraps `JsonLinesError` in its own error so the message names the file and the line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class JsonLinesError(ValueError):
    def __init__(self, line_no: int, message: str) -> None:
        super().__init__(f"line {line_no}: {message}")
        self.line_no, self.reason = line_no, message


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for every non-blank line; a line that is not JSON raises JsonLinesError."""
    with Path(path).open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise JsonLinesError(line_no, f"not JSON ({exc.msg})") from exc
