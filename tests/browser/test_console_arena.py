"""The arena in Chromium (issue 8, checks 3 and 5): one prompt to R1 and Zero, both sides stream at
once on the page with their timings, a blind vote is recorded and the Elo table moves; screenshots
of the match go to artifacts/screenshots/."""

from __future__ import annotations

import pytest

from .console_fixtures import console_login, console_server, screenshot  # noqa: F401 - fixture

# The Zero profile recomputes the whole ~1,000-token pack prompt per token in fp32: tens of minutes
# per side on this 2-core machine, so this test is not in the default run (`pytest -m manual` runs it;
# issue 8 check 3 stays open until it passes in the default suite).
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.manual]

STREAM_TIMEOUT_MS = 600_000

# Samples, on every change, how much answer text each side shows; both must grow before either ends.
RECORDER = """() => {
  window.__arena = [];
  const root = document.getElementById('arena');
  new MutationObserver(() => {
    const sides = [...root.querySelectorAll('.arena-side')];
    window.__arena.push(sides.map(s => [s.dataset.state, s.querySelector('[data-role=answer]').textContent.length]));
  }).observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def test_both_engines_stream_side_by_side_and_a_vote_moves_the_elo_table(page, page_log, console_server):  # noqa: F811
    console_login(page, console_server, "con-expert", "/console/arena/")
    page.locator("#arena-prompt").fill("What is an index fund?")
    page.get_by_test_id("arena-start").click()
    page.wait_for_selector("#arena")
    page.evaluate(RECORDER)
    page.wait_for_selector(".arena-side[data-side='left']:not([data-state='streaming'])", timeout=STREAM_TIMEOUT_MS)
    page.wait_for_selector(".arena-side[data-side='right']:not([data-state='streaming'])", timeout=STREAM_TIMEOUT_MS)
    frames = page.evaluate("window.__arena")
    both_growing = [f for f in frames if f[0][0] == "streaming" and f[1][0] == "streaming" and f[0][1] and f[1][1]]
    assert both_growing, f"never saw both sides streaming at once: {frames[-5:]}"
    for side in ("left", "right"):
        locator = page.locator(f".arena-side[data-side='{side}']")
        assert locator.get_attribute("data-state") == "done"
        assert "tok/s" in locator.locator("[data-role=stats]").inner_text()
        assert "TTFT" in locator.locator("[data-role=stats]").inner_text()
    screenshot(page, "console-arena.png")
    page.get_by_role("button", name="A is better").click()
    assert "Voted: left" in page.get_by_test_id("arena-result").inner_text()
    page.goto(f"{console_server.base_url}/console/arena/")
    table = page.get_by_test_id("elo-table").inner_text()
    assert "1016.0" in table and "984.0" in table
    assert not page_log.page_errors
