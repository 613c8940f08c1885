"""The pack lifecycle in Chromium (issue 8, check 1) against the embedded default served by run.sh.

An expert edits the finance pack and runs its evaluation (the progress bar and the table fill in from
the real engine and safety pipeline); an admin who drafts a version cannot approve it; a draft whose
evaluation fails cannot be approved; a second user (the approver) approves and publishes the expert's
draft (after a canary share of it is started and its comparison page shown); a new conversation uses
it; rollback restores the previous version. Screenshots of the evaluation, the canary comparison and
the dashboard go to artifacts/screenshots/ at the repository root (gitignored).

The server (tests/browser/console_fixtures.py) gets a copy of domains/ whose finance evaluation set
is cut to four of its own cases, so that each run takes seconds.
"""

from __future__ import annotations

import re

import pytest
import yaml

from .conftest import VerityServer
from .console_fixtures import KEEP_CASES, console_login, console_server, screenshot  # noqa: F401 - fixture

pytestmark = pytest.mark.browser

EVAL_TIMEOUT_MS = 600_000


def _published_version_url(page, server: VerityServer) -> str:
    page.goto(f"{server.base_url}/console/packs/")
    row = page.locator("section[data-domain='finance'] tr.status-published a")
    return server.base_url + row.get_attribute("href")


def _run_eval(page, shot: str | None = None) -> str:
    page.get_by_test_id("run-eval").click()
    page.wait_for_url(re.compile(r".*/console/evals/.+/$"))
    page.wait_for_selector("#eval-run[data-status='passed'], #eval-run[data-status='failed'], "
                           "#eval-run[data-status='error']", timeout=EVAL_TIMEOUT_MS)
    progress = page.locator("#eval-progress")
    assert progress.get_attribute("value") == progress.get_attribute("max") == str(len(KEEP_CASES))
    assert page.locator("#eval-rows tr").count() == len(KEEP_CASES)
    if shot:
        screenshot(page, shot)
    status = page.locator("#eval-run").get_attribute("data-status")
    page.get_by_role("link", name="Back to the version").click()
    return status


def _version_number(page) -> int:
    return int(page.get_by_test_id("pack-version").inner_text().removeprefix("v"))


def _new_conversation_pack(page, server: VerityServer) -> int:
    """Start a conversation through the chat API with the page's own session, as chat.js does; returns
    the pack version number the conversation pinned."""
    return page.evaluate("""async () => {
        const token = document.querySelector('meta[name=csrf-token]').content;
        const response = await fetch('/chat/api/conversations', {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken': token},
            body: JSON.stringify({domain: 'finance'})});
        return (await response.json()).pack_version;
    }""")


def test_expert_edits_evaluates_approver_publishes_and_rolls_back(page, page_log, console_server):  # noqa: F811
    server = console_server
    console_login(page, server, "con-expert", "/console/packs/")
    original_url = _published_version_url(page, server)
    original_pk = int(original_url.rstrip("/").rsplit("/", 1)[1])
    page.goto(original_url)
    original_number = _version_number(page)
    page.locator("#f-title").fill("Verity Money Basics (reviewed)")
    page.get_by_test_id("save-form").click()
    page.wait_for_selector("[data-testid='pack-status']:text('draft')")
    draft_url = page.url
    draft_pk, draft_number = int(draft_url.rstrip("/").rsplit("/", 1)[1]), _version_number(page)
    assert draft_pk != original_pk and draft_number == original_number + 1
    assert page.get_by_test_id("approve").count() == 0  # an expert holds no approval right
    assert _run_eval(page, shot="console-eval-passed.png") == "passed"

    # An admin drafts a version with an over-broad rule that blocks ordinary questions about interest:
    # its evaluation fails (the compound-interest case must be answered), and as its author the admin
    # cannot approve it anyway. (Removing a refusal rule no longer makes a sure failure: the input
    # classifier blocks the structuring case by itself.)
    console_login(page, server, "con-admin", draft_url)
    page.goto(original_url)
    page.locator("details summary").click()
    data = yaml.safe_load(page.locator("textarea[name=yaml]").input_value())
    data["risk_rules"].append({"id": "fin.overbroad", "description": "Blocks every question about interest.",
                               "stage": "input", "action": "block", "refusal": "illegal",
                               "patterns": [r"\binterest\b"]})
    page.locator("textarea[name=yaml]").fill(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    page.get_by_test_id("save-yaml").click()
    page.wait_for_selector("[data-testid='pack-status']:text('draft')")
    weak_url = page.url
    assert _run_eval(page) == "failed"
    page.get_by_test_id("approve").click()
    assert "a second person must approve it" in page.get_by_test_id("error").inner_text()

    console_login(page, server, "con-approver", weak_url)
    page.get_by_test_id("approve").click()
    assert "failed its latest evaluation" in page.get_by_test_id("error").inner_text()
    assert page.get_by_test_id("pack-status").inner_text() == "draft"

    page.goto(draft_url)
    page.get_by_test_id("approve").click()
    page.wait_for_selector("[data-testid='pack-status']:text('approved')")
    # Before publishing, the approver sends a canary share to the candidate and sees both versions
    # compared; publishing ends the share (the split itself is tested in tests/apps/prompt_packs).
    page.locator("input[name=percent]").fill("50")
    page.get_by_test_id("canary-start").click()
    page.wait_for_url(re.compile(r".*/console/packs/canary/finance/$"))
    assert "50%" in page.get_by_test_id("canary-state").inner_text()
    assert page.locator(f"[data-testid=canary-table] tr[data-role=canary][data-version='{draft_number}']").count() == 1
    assert page.locator("[data-testid=canary-table] tr[data-role=published]").count() == 1
    screenshot(page, "console-canary.png")
    page.goto(draft_url)
    page.get_by_test_id("publish").click()
    page.wait_for_selector("[data-testid='pack-status']:text('published')")
    assert _new_conversation_pack(page, server) == draft_number

    page.get_by_test_id("rollback").click()
    page.wait_for_selector("[data-testid='pack-status']:text('published')")
    assert page.url.rstrip("/").endswith(f"/{original_pk}")
    assert _new_conversation_pack(page, server) == original_number

    page.goto(f"{server.base_url}/console/dashboard/")
    page.wait_for_selector("#chart-daily svg polyline")
    screenshot(page, "console-dashboard.png")
    assert not page_log.page_errors and not [e for e in page_log.console_errors if "Content Security" in e]
