"""model_core is a pure engine: importing it (and its CLI) pulls in no Django, Celery or apps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_model_core_imports_without_django():
    code = ("import sys, model_core, model_core.cli, model_core.convert, model_core.gguf_loader\n"
            "from model_core import Engine, SamplingParams, Result, StreamEvent\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'celery', 'apps', 'config', "
            "'rest_framework', 'redis', 'transformers'})\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings.test"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"model_core imported {out.stdout.strip()}"
