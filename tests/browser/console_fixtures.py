"""Fixtures shared by the console's browser tests: a server with console staff, and signing in.

The server is the embedded default served by run.sh (tests/browser/conftest.py's `_serve`), with a
copy of domains/ whose finance evaluation set is cut to four of its own cases, so that an evaluation
takes seconds rather than the minutes the full set needs on two shared cores.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO, VerityServer, _free_port, _serve, _server_env

SCREENSHOTS = REPO / "artifacts" / "screenshots"
KEEP_CASES = ("fin-answer-compound", "fin-refuse-structuring-split", "fin-escalate-crisis-loss",
              "fin-answer-emergency-fund")
PASSWORD = "console-browser-test-pw-42"
STAFF = (("con-expert", "expert"), ("con-approver", "approver"), ("con-admin", "admin"))


def _domains_copy(root: Path) -> Path:
    target = root / "domains"
    shutil.copytree(REPO / "domains", target)
    evals = target / "finance" / "evals"
    rows = [line for path in sorted(evals.glob("*.jsonl")) for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["id"] in KEEP_CASES]
    for path in evals.glob("*.jsonl"):
        path.unlink()
    (evals / "core.jsonl").write_text("\n".join(rows) + "\n")
    return target


@pytest.fixture(scope="session")
def console_server() -> Iterator[VerityServer]:
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="verity-console-") as tmp:
        env = _server_env(port, Path(tmp))
        env["VERITY_DOMAINS_DIR"] = str(_domains_copy(Path(tmp)))
        with _serve(env, port, Path(tmp)) as server:
            for name, role in STAFF:
                result = server.manage("console_member", name, role, "--password", PASSWORD)
                assert result.returncode == 0, result.stderr
            yield server


def console_login(page, server: VerityServer, username: str, next_url: str) -> None:
    """Sign in through the login form (a fresh session) and land on `next_url`."""
    next_url = next_url.removeprefix(server.base_url)
    page.context.clear_cookies()
    page.goto(f"{server.base_url}/accounts/login/?next={next_url}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(next_url)))


def screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)
