"""One real chat turn in Chromium against the embedded default (issue 2, check 1).

`scripts/run.sh` serves Verity exactly as the README's run command does (fresh SQLite database,
in-process worker thread, in-memory stream bus, the bundled SmolLM2 model). The demo customer signs
in, picks finance, asks "What is compound interest?", and the test checks what a person would: the
answer's text grows on screen while the reply is still streaming, it ends with the finance
disclaimer, and it is the reply that was stored (read back through the conversation API with the
page's session) and audited (a `turn.completed` record for that reply, and `audit_verify` passes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import REPO, login, wait_for_answer

pytestmark = pytest.mark.browser

QUESTION = "What is compound interest?"
ANSWER_TIMEOUT_MS = 600_000  # two CPU cores shared with other jobs; the fixture caps the length
SCREENSHOTS = REPO / "artifacts" / "screenshots"

# Records, on every DOM change under #messages, how much answer text is on screen and whether the
# reply is still marked as streaming; timestamps come from the page's own clock.
RECORDER = """() => {
  window.__frames = [];
  const messages = document.getElementById('messages');
  new MutationObserver(() => {
    const answers = messages.querySelectorAll('article.message-assistant');
    const last = answers[answers.length - 1];
    if (!last) return;
    window.__frames.push({t: performance.now(), streaming: last.dataset.streaming,
                          length: last.querySelector('.bubble').textContent.length});
  }).observe(messages, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def _rendered_text(page, markdown: str) -> str:
    """What the page's own renderer shows for `markdown` (so stored and shown text compare exactly)."""
    return page.evaluate(
        """async (text) => {
            const src = document.querySelector('script[src*="chat/chat.js"]').src;
            const md = await import(new URL('markdown.js', src).href);
            const div = document.createElement('div');
            md.renderInto(div, text);
            return div.textContent;
        }""",
        markdown,
    )


def _audit_records(server, reply_id: str) -> list[dict]:
    code = (
        "import json; from apps.audit.models import AuditRecord as A; "
        f"print(json.dumps(list(A.objects.filter(subject={reply_id!r}).values('event', 'pack_version', "
        "'model_version', 'hash'))))"
    )
    result = server.manage("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_demo_customer_sees_a_streamed_finance_answer_that_is_stored_and_audited(page, page_log, verity_server):
    _one_turn_streamed_stored_audited(page, page_log, verity_server, screenshot="chat-after-answer.png")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_the_same_turn_in_services_mode_with_a_celery_worker(page, page_log, services_server):
    _one_turn_streamed_stored_audited(page, page_log, services_server, screenshot="chat-services-mode.png")


def _one_turn_streamed_stored_audited(page, page_log, verity_server, *, screenshot: str) -> None:
    login(page, verity_server)
    page.evaluate(RECORDER)

    page.get_by_role("radio", name="Finance").check()
    box = page.get_by_label("Your message")
    box.fill(QUESTION)
    box.press("Enter")

    # The first turn after start-up also loads the safety models and the engine: no short waits here.
    wait_for_answer(page, verity_server, ANSWER_TIMEOUT_MS)
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    answer = page.locator("article.message-assistant").last

    # Nothing failed, and the answer ends with the finance pack's disclaimer.
    assert answer.locator(".message-note-error").count() == 0, answer.inner_text()
    shown = answer.locator(".bubble").text_content()
    assert shown.strip(), "the assistant bubble is empty"
    assert answer.locator(".disclaimer").is_visible()
    assert answer.locator(".disclaimer").inner_text().strip()

    # Tokens appeared before the reply was complete: while the bubble was still marked streaming,
    # its text took several different non-empty lengths, each shorter than the final answer.
    frames = page.evaluate("window.__frames")
    while_streaming = sorted({f["length"] for f in frames if f["streaming"] == "true" and f["length"] > 0})
    assert len(while_streaming) >= 3, f"answer text did not grow while streaming: {while_streaming}"
    assert while_streaming[0] < len(shown)
    first_token_t = min(f["t"] for f in frames if f["streaming"] == "true" and f["length"] > 0)
    done_t = min(f["t"] for f in frames if f["streaming"] == "false")
    assert first_token_t < done_t

    # Stored: the conversation API (with this page's session) holds the question and this answer.
    conversation_id = page.evaluate("location.hash.replace('#c=', '')")
    reply_id = answer.get_attribute("data-reply-id")
    stored = page.evaluate(
        "async (id) => (await fetch(`/chat/api/conversations/${id}`, {headers: {Accept: 'application/json'}})).json()",
        conversation_id,
    )
    assert stored["domain"] == "finance"
    roles = [(m["role"], m["status"]) for m in stored["messages"]]
    assert roles[0][0] == "user" and stored["messages"][0]["content"] == QUESTION
    reply = next(m for m in stored["messages"] if m["id"] == reply_id)
    assert reply["status"] == "complete"
    assert _rendered_text(page, reply["content"]) == shown
    assert reply["disclaimer"] == answer.locator(".disclaimer").text_content()

    # Audited: one turn.completed record names this reply, and the whole chain verifies.
    records = _audit_records(verity_server, reply_id)
    assert [r["event"] for r in records] == ["turn.completed"], records
    assert records[0]["pack_version"] and records[0]["model_version"]
    verify = verity_server.manage("audit_verify")
    assert verify.returncode == 0 and "OK" in verify.stdout, verify.stdout + verify.stderr

    # The strict CSP held: no violation or script error on the real page.
    assert page_log.console_errors == [] and page_log.page_errors == []

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(SCREENSHOTS, screenshot)), full_page=True)


def test_too_long_message_gets_the_servers_error_inline(page, verity_server):
    login(page, verity_server)
    page.get_by_role("radio", name="Finance").check()
    box = page.get_by_label("Your message")
    box.fill("a" * 9000)  # over VERITY_MAX_MESSAGE_CHARS (8000 by default)
    box.press("Enter")
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=60_000)
    assert "8000" in error.inner_text() or "too long" in error.inner_text().lower()
    assert page.locator("article.message-user").count() == 0
    assert box.input_value() == "a" * 9000


def test_wrong_password_is_refused_with_a_message(page, verity_server):
    page.goto(f"{verity_server.base_url}/accounts/login/")
    page.get_by_label("Username").fill(verity_server.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").first.is_visible()
    assert "/accounts/login/" in page.url
