"""`manage.py packs_load`: prints what it did; exits non-zero naming the file and field on bad packs."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.prompt_packs.models import PackVersion
from tests.apps.prompt_packs.conftest import pack_yaml_edit

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("packs_load", *args, stdout=out)
    return out.getvalue()


def test_load_reports_new_then_unchanged(packs_root):
    first = _run("--root", str(packs_root))
    assert "finance: v1 2026.11.1 published (new)" in first
    assert first.count("published (new)") == 3

    second = _run("--root", str(packs_root))
    assert second.count("unchanged") == 3
    assert PackVersion.objects.count() == 3


def test_check_validates_without_writing(packs_root):
    out = _run("--root", str(packs_root), "--check")
    assert "legal: valid" in out
    assert PackVersion.objects.count() == 0


def test_invalid_pack_fails_with_file_and_field(packs_root):
    pack_yaml_edit(packs_root, "finance", lambda d: d["sampling"].update(temperature=-1))
    with pytest.raises(CommandError) as caught:
        _run("--root", str(packs_root))
    message = str(caught.value)
    assert "finance/pack.yaml: sampling.temperature: must be between 0 and 2" in message
    assert PackVersion.objects.count() == 0


def test_empty_root_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="no packs found"):
        _run("--root", str(tmp_path))


def test_missing_root_is_an_error(tmp_path):
    with pytest.raises(CommandError, match="packs folder not found"):
        _run("--root", str(tmp_path / "nowhere"))


def test_command_line_exit_status_and_message(packs_root):
    """Run as a real process: a bad pack exits 1 with the file and field on stderr (no DB touched)."""
    import os
    import subprocess
    import sys

    from django.conf import settings

    from tests.apps.prompt_packs.conftest import REPO

    pack_yaml_edit(packs_root, "legal", lambda d: d["risk_rules"][0].update(stage="both"))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings.SETTINGS_MODULE, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "django", "packs_load", "--root", str(packs_root)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert "legal/pack.yaml: risk_rules[0].stage: must be one of input, output" in done.stderr
