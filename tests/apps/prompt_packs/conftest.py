"""Fixtures for the prompt-pack tests: a writable copy of the real packs, users, pack content."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DOMAINS = REPO / "domains"
REAL_DOMAINS = ("finance", "legal", "medical")


@pytest.fixture
def packs_root(tmp_path: Path) -> Path:
    """A copy of domains/ that a test may edit or break without touching the real packs."""
    root = tmp_path / "domains"
    shutil.copytree(DOMAINS, root, ignore=shutil.ignore_patterns("README.md"))
    return root


def pack_yaml_edit(root: Path, domain: str, edit: Any) -> Path:
    """Load `<root>/<domain>/pack.yaml`, let `edit(data)` change it, write it back."""
    path = root / domain / "pack.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def make_user(db: Any) -> Any:
    from django.contrib.auth import get_user_model

    def make(username: str) -> Any:
        return get_user_model().objects.create_user(username=username)  # no password: no slow hashing

    return make
