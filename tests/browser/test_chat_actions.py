"""The chat page's conversation and answer actions in Chromium against a scripted backend.

Real template, scripts, stylesheet and CSP; the API is `FakeChatSite` (no model). Each test pins what
a customer notices: copy, thumbs with an optional comment, regenerate replacing the newest answer,
rename / delete (with its confirmation) / export, search of the list, the escalation banner with
"talk to a human", the context gauge, and an expert's reply arriving on the conversation's own
stream. The same flows against the real server and model are in test_chat_flows.py.
"""

from __future__ import annotations

import pytest

from .fake_site import ORIGIN, FakeChatSite

pytestmark = pytest.mark.browser

DISCLAIMER = "This is general information, not financial advice."
DONE = {"message_id": "m2", "content": "Save **early**.", "reasoning": "", "finish_reason": "stop", "usage": {},
        "disclaimer": DISCLAIMER, "context": {"tokens": 300, "budget": 1000, "ratio": 0.3}}


@pytest.fixture
def site(page) -> FakeChatSite:
    fake = FakeChatSite()
    fake.next_events = [("answer.delta", {"text": "Save **early**."}), ("done", DONE)]
    fake.open(page)
    return fake


def ask(page, text: str = "How do I save?", domain: str | None = "Finance") -> None:
    if domain:
        page.get_by_role("radio", name=domain).check()
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    page.wait_for_selector("article.message-assistant[data-settled='true']")


def posts(site: FakeChatSite, suffix: str) -> list:
    return [body for method, path, body in site.calls if method == "POST" and path.endswith(suffix)]


def test_thumbs_down_with_a_comment_is_sent_and_shown_pressed(page, site):
    ask(page)
    answer = page.locator("article.message-assistant").last
    answer.get_by_role("button", name="Not helpful").click()
    answer.get_by_label("Tell us more (optional)").fill("Too vague for my situation.")
    answer.get_by_role("button", name="Send feedback").click()
    expect_status = answer.locator(".action-status")
    expect_status.filter(has_text="comment was sent").wait_for()
    assert posts(site, "/messages/m2/feedback") == [{"rating": "down"},
                                                    {"rating": "down", "reason": "Too vague for my situation."}]
    assert answer.get_by_role("button", name="Not helpful").get_attribute("aria-pressed") == "true"
    assert answer.get_by_role("button", name="Helpful", exact=True).get_attribute("aria-pressed") == "false"
    assert answer.locator(".feedback-form").is_hidden()


def test_copy_puts_the_answer_markdown_on_the_clipboard(page, site):
    ask(page)
    # The fake origin is plain http, not a secure context, so Chromium offers no clipboard API here:
    # a recorder stands in for it (the real clipboard is used against the real server, on 127.0.0.1).
    page.evaluate("""() => Object.defineProperty(navigator, 'clipboard', {configurable: true,
        value: {writeText: async (text) => { window.__copied = text; }}})""")
    answer = page.locator("article.message-assistant").last
    answer.get_by_role("button", name="Copy").click()
    answer.locator(".action-status").filter(has_text="copied").wait_for()
    assert page.evaluate("window.__copied") == "Save **early**."


def test_regenerate_replaces_the_newest_answer_only(page, site):
    ask(page, "First question")
    site.next_events = [("answer.delta", {"text": "Second answer."}),
                        ("done", {**DONE, "message_id": "m4", "content": "Second answer."})]
    ask(page, "Second question", domain=None)
    answers = page.locator("article.message-assistant")
    assert answers.first.get_by_role("button", name="Regenerate").is_hidden()
    site.next_events = [("answer.delta", {"text": "A better answer."}),
                        ("done", {**DONE, "message_id": "m5", "content": "A better answer."})]
    answers.last.get_by_role("button", name="Regenerate").click()
    page.wait_for_selector("article.message-assistant[data-message-id='m5'][data-settled='true']")
    assert answers.count() == 2
    assert [a.inner_text() for a in page.locator("article.message-assistant .bubble").all()] == [
        "Save early.", "A better answer."]
    assert len(posts(site, "/conversations/1/regenerate")) == 1
    assert answers.last.get_by_role("button", name="Regenerate").is_visible()


def test_rename_by_keyboard_and_a_refused_title_keeps_the_text(page, site):
    ask(page)
    page.get_by_role("button", name="Rename").click()
    dialog = page.get_by_role("dialog", name="Rename conversation")
    box = dialog.get_by_label("Title")
    assert box.evaluate("(el) => el === document.activeElement")
    box.fill("   ")
    box.press("Enter")
    assert dialog.get_by_role("alert").inner_text() == "Enter a title."
    box.fill("My savings plan")
    box.press("Enter")
    dialog.wait_for(state="hidden")
    assert page.locator("#chat-heading").inner_text() == "My savings plan"
    page.locator(".conversation-link[aria-current='page']").filter(has_text="My savings plan").wait_for()
    page.get_by_role("button", name="Rename").click()
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")


def test_delete_asks_first_then_removes_the_conversation(page, site):
    ask(page)
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name="Delete this conversation?")
    assert "keeps its own record" in dialog.inner_text()
    dialog.get_by_role("button", name="Keep it").click()
    assert "1" in site.stored
    page.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete conversation").click()
    page.locator("#domain-picker").wait_for(state="visible")
    assert ("DELETE", "/chat/api/conversations/1", None) in site.calls
    assert page.locator("article.message").count() == 0
    assert page.locator("#conversation-tools").is_hidden()
    page.locator("#conversation-empty").filter(has_text="No conversations yet").wait_for()


def test_export_links_download_markdown_and_json(page, site):
    ask(page)
    with page.expect_download() as markdown:
        page.get_by_role("link", name="Export Markdown").click()
    assert markdown.value.suggested_filename == "verity-export.md"
    with page.expect_download() as as_json:
        page.get_by_role("link", name="Export JSON").click()
    assert as_json.value.suggested_filename == "verity-export.json"


def test_search_filters_the_list_and_says_when_nothing_matches(page, site):
    site.conversations = [{"id": "20", "domain": "legal", "title": "Tenancy deposit"},
                          {"id": "21", "domain": "finance", "title": "Pension basics"}]
    search = page.get_by_role("searchbox", name="Search conversations")
    search.fill("pension")
    page.locator("#conversation-list .conversation-link").filter(has_text="Pension basics").wait_for()
    page.wait_for_function("() => document.querySelectorAll('#conversation-list li').length === 1")
    assert page.locator("#search-status").inner_text() == "1 conversation found."
    search.fill("zebra")
    page.locator("#conversation-empty").filter(has_text="No conversations match").wait_for(state="visible")


def test_escalation_shows_the_banner_and_talk_to_a_human_queues_once(page, site):
    crisis = "If you are thinking about harming yourself, call or text 988 (US)."
    site.next_events = [("escalation", {"kind": "crisis", "text": crisis}), ("answer.delta", {"text": crisis}),
                        ("done", {**DONE, "content": crisis, "disclaimer": "",
                                  "escalation": {"kind": "crisis", "text": crisis}})]
    ask(page, "I feel hopeless", domain="Medical")
    banner = page.locator("#banner")
    assert banner.is_visible() and banner.get_attribute("role") == "alert"
    assert crisis in banner.inner_text()
    banner.get_by_role("button", name="Talk to a human").click()
    banner.filter(has_text="A specialist has been asked to join").wait_for()
    again = banner.get_by_role("button", name="Human requested")
    assert again.get_attribute("aria-disabled") == "true"
    again.focus()  # still focusable, so a keyboard user hears why nothing more happens
    page.keyboard.press("Enter")
    page.locator("#status").filter(has_text="already been asked").wait_for(state="attached")
    assert len(posts(site, "/conversations/1/handoff")) == 1


def test_context_gauge_shows_the_share_of_memory_used(page, site):
    ask(page)
    assert page.locator("#context-gauge").is_visible()
    assert page.locator("#context-text").inner_text() == "30% of memory used"
    assert page.locator("#context-meter").evaluate("(m) => m.value") == pytest.approx(0.3)


def test_an_expert_reply_on_the_conversation_stream_appears_once(page, site):
    site.stored["5"] = {"id": "5", "domain": "finance", "title": "Loan help", "context": {}, "messages": [
        {"id": "u1", "role": "user", "content": "I want to talk to a person", "reasoning": "", "status": "complete",
         "created_at": "2026-11-28T10:00:00Z", "disclaimer": ""}]}
    reply = {"message_id": "h9", "conversation_id": "5", "content": "Hello, I'm **Dana** from the advice team.",
             "author": "human", "name": "Dana Ruiz", "created_at": "2026-11-28T10:01:00Z"}
    site.conversation_events = [("handoff.requested", {"handoff_id": "h", "status": "open", "kind": "human"}),
                                ("human.message", reply), ("human.message", reply)]
    page.goto(f"{ORIGIN}/chat/#c=5")
    page.wait_for_selector("article[data-message-id='h9']")
    page.wait_for_timeout(200)
    expert = page.locator("article[data-message-id='h9']")
    assert expert.count() == 1
    assert expert.locator(".message-role").inner_text() == "Dana Ruiz · a person, not the AI"
    assert expert.locator(".bubble strong").inner_text() == "Dana"
    assert page.locator("#status").inner_text() == "Dana Ruiz replied."


def test_answer_actions_work_from_the_keyboard(page, site):
    ask(page)
    answer = page.locator("article.message-assistant").last
    answer.get_by_role("button", name="Helpful", exact=True).focus()
    page.keyboard.press("Enter")
    comment = answer.get_by_label("Tell us more (optional)")
    comment.wait_for(state="visible")
    assert comment.evaluate("(el) => el === document.activeElement")  # focus moved to the optional comment
    page.keyboard.press("Tab")
    assert answer.get_by_role("button", name="No thanks").evaluate("(el) => el === document.activeElement")
    page.keyboard.press("Enter")  # dismiss the comment: the rating stands, focus returns to the thumb
    assert answer.locator(".feedback-form").is_hidden()
    assert answer.get_by_role("button", name="Helpful", exact=True).evaluate("(el) => el === document.activeElement")
    assert posts(site, "/messages/m2/feedback") == [{"rating": "up"}]
