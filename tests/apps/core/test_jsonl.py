"""apps.core.jsonl: JSON Lines read with blank lines skipped and bad lines named by number."""

from __future__ import annotations

import pytest

from apps.core.jsonl import JsonLinesError, jsonl_rows


def test_rows_come_with_their_line_numbers_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n  \n[2]\n', encoding="utf-8")
    assert list(jsonl_rows(path)) == [(1, {"a": 1}), (4, [2])]


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(JsonLinesError, match=r"^line 2: not JSON") as info:
        list(jsonl_rows(path))
    assert info.value.line_no == 2
