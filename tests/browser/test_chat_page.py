"""The chat page's behaviour in Chromium against a scripted backend (no model needed).

The real template, script, stylesheet and CSP; the JSON API and SSE stream are scripted by
`FakeChatSite`, so each test pins one behaviour a customer notices: how a message is sent, how
each stream event shows up, how errors read, and that the page stays usable by keyboard and on a
phone-width screen.
"""

from __future__ import annotations

import pytest

from .fake_site import FakeChatSite

pytestmark = pytest.mark.browser

DISCLAIMER = "This is general information, not financial advice."


@pytest.fixture
def site(page) -> FakeChatSite:
    fake = FakeChatSite()
    fake.next_events = [
        ("answer.delta", {"text": "Compound interest is "}),
        ("answer.delta", {"text": "**interest on interest**."}),
        ("done", {"message_id": "m2", "content": "Compound interest is **interest on interest**.",
                  "reasoning": "", "finish_reason": "stop", "usage": {}, "disclaimer": DISCLAIMER}),
    ]
    fake.open(page)
    return fake


def send(page, text: str, domain: str | None = "Finance") -> None:
    if domain:
        page.get_by_role("radio", name=domain).check()
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")


def last_assistant(page):
    return page.locator("article.message-assistant").last


def wait_done(page) -> None:
    page.wait_for_selector("article.message-assistant[data-streaming='false']")


def test_send_with_enter_streams_answer_with_disclaimer(page, site, page_log):
    send(page, "What is compound interest?")
    wait_done(page)

    assert page.locator("article.message-user .bubble").inner_text() == "What is compound interest?"
    answer = last_assistant(page)
    assert answer.locator(".bubble").inner_text() == "Compound interest is interest on interest."
    assert answer.locator(".bubble strong").inner_text() == "interest on interest"
    assert answer.locator(".disclaimer").inner_text() == DISCLAIMER
    assert answer.locator("details.reasoning").is_hidden()
    # The page created the conversation in the picked domain, then posted the text with a CSRF header.
    posts = [(path, body) for method, path, body in site.calls if method == "POST"]
    assert posts[0] == ("/chat/api/conversations", {"domain": "finance"})
    assert posts[1] == ("/chat/api/conversations/1/messages", {"text": "What is compound interest?"})
    assert page.get_by_label("Your message").input_value() == ""
    assert page.locator("#domain-picker").is_hidden()
    assert page.locator("#domain-badge").inner_text() == "Finance"
    # Strict CSP and nothing external: no violation reported, nothing left the fake origin.
    assert page_log.console_errors == [] and page_log.page_errors == []
    assert site.leaks == []


def test_shift_enter_adds_a_line_instead_of_sending(page, site):
    page.get_by_role("radio", name="Finance").check()
    box = page.get_by_label("Your message")
    box.fill("first line")
    box.press("Shift+Enter")
    box.type("second line")
    assert box.input_value() == "first line\nsecond line"
    assert not [c for c in site.calls if c[0] == "POST"]
    page.get_by_role("button", name="Send").click()
    wait_done(page)
    assert page.locator("article.message-user .bubble").inner_text() == "first line\nsecond line"


def test_sending_without_a_topic_asks_for_one(page, site):
    send(page, "Hello", domain=None)
    assert "Choose a topic first" in page.get_by_role("alert").filter(has_text="topic").inner_text()
    assert not [c for c in site.calls if c[0] == "POST"]


def test_api_error_is_shown_inline_and_the_text_is_kept(page, site):
    site.message_error = (413, {"error": {"code": "message_too_long", "message": "Your message is too long (max 8000 characters)."}})
    send(page, "x" * 50)
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert error.inner_text() == "Your message is too long (max 8000 characters)."
    assert page.locator("article.message-user").count() == 0
    assert page.get_by_label("Your message").input_value() == "x" * 50
    assert page.get_by_role("button", name="Send").is_enabled()


def test_reasoning_is_collapsed_with_its_duration(page, site):
    site.next_events = [
        ("reasoning.delta", {"text": "The user asks about interest. "}),
        ("reasoning.delta", {"text": "Explain simply."}),
        ("answer.delta", {"text": "It grows on itself."}),
        ("done", {"message_id": "m2", "content": "It grows on itself.", "reasoning": "The user asks about interest. Explain simply.",
                  "finish_reason": "stop", "usage": {}, "disclaimer": DISCLAIMER}),
    ]
    send(page, "What is compound interest?")
    wait_done(page)
    details = last_assistant(page).locator("details.reasoning")
    assert details.is_visible()
    assert details.get_attribute("open") is None
    assert details.locator("summary").inner_text().startswith("Thought for ")
    assert details.locator(".reasoning-body").is_hidden()
    details.locator("summary").click()
    assert details.locator(".reasoning-body").inner_text() == "The user asks about interest. Explain simply."
    assert last_assistant(page).locator(".bubble").inner_text() == "It grows on itself."


def test_safety_retract_withdraws_text_already_shown(page, site):
    # `done` without content: what remains on screen is what the page made of the retract itself.
    site.next_events = [
        ("answer.delta", {"text": "Buy ACME, it is guaranteed to double."}),
        ("retract", {"target": "answer", "reason": "safety"}),
        ("answer.delta", {"text": "I can't promise returns on any investment."}),
        ("done", {"message_id": "m2", "finish_reason": "stop", "usage": {}, "disclaimer": DISCLAIMER}),
    ]
    send(page, "What should I buy?")
    wait_done(page)
    answer = last_assistant(page)
    assert answer.locator(".bubble").inner_text() == "I can't promise returns on any investment."
    assert "guaranteed" not in page.locator("#messages").inner_text()
    assert answer.locator(".message-note").inner_text() == "Part of this answer was withdrawn by a safety check."


def test_restart_retract_clears_reasoning_and_answer_before_the_regenerated_text(page, site):
    site.next_events = [
        ("reasoning.delta", {"text": "First attempt thinking."}),
        ("answer.delta", {"text": "First attempt."}),
        ("retract", {"target": "reasoning", "reason": "restart"}),
        ("retract", {"target": "answer", "reason": "restart"}),
        ("reasoning.delta", {"text": "Second attempt thinking."}),
        ("answer.delta", {"text": "Second attempt."}),
        ("done", {"message_id": "m2", "finish_reason": "stop", "usage": {}, "disclaimer": DISCLAIMER}),
    ]
    send(page, "What is compound interest?")
    wait_done(page)
    answer = last_assistant(page)
    assert answer.locator(".bubble").inner_text() == "Second attempt."
    assert answer.locator(".reasoning-body").text_content() == "Second attempt thinking."
    assert answer.locator(".message-note").count() == 0


def test_stream_error_is_explained(page, site):
    site.next_events = [
        ("answer.delta", {"text": "Compound"}),
        ("error", {"code": "engine_unavailable", "message": "The assistant is unavailable right now. Please try again."}),
    ]
    send(page, "What is compound interest?")
    wait_done(page)
    answer = last_assistant(page)
    assert "message-failed" in answer.get_attribute("class")
    assert answer.locator(".message-note-error").inner_text() == "The assistant is unavailable right now. Please try again."
    assert page.get_by_role("button", name="Send").is_enabled()


def test_hostile_answer_is_inert_in_the_chat_page(page, site, page_log):
    hostile = ("<script>window.__pwned=1</script> ![pixel](http://tracker.example/p.png) "
               "<img src=x onerror=\"window.__pwned=2\"> [x](javascript:window.__pwned=3)")
    site.next_events = [
        ("answer.delta", {"text": hostile}),
        ("done", {"message_id": "m2", "content": hostile, "reasoning": "<script>window.__pwned=4</script>",
                  "finish_reason": "stop", "usage": {}, "disclaimer": "<b>disclaimer</b>"}),
    ]
    send(page, "Show me markup")
    wait_done(page)
    page.wait_for_timeout(300)
    answer = last_assistant(page)
    assert page.evaluate("window.__pwned") is None
    assert answer.locator("script, img, iframe").count() == 0
    assert "<script>window.__pwned=1</script>" in answer.locator(".bubble").inner_text()
    assert answer.locator(".disclaimer").inner_text() == "<b>disclaimer</b>"
    assert site.leaks == [] and not [u for u in page_log.requests if "tracker" in u]


def test_stop_button_cancels_the_reply(page, site):
    site.next_events = [("answer.delta", {"text": "A long answer"})]  # no done: still streaming
    send(page, "Tell me everything")
    stop = page.get_by_role("button", name="Stop")
    stop.wait_for(state="visible")
    with page.expect_request("**/cancel") as cancel:
        stop.click()
    assert cancel.value.method == "POST"
    assert cancel.value.url.startswith("http://verity.test/chat/api/replies/r")
    assert cancel.value.headers.get("x-csrftoken") is not None


def test_opening_a_stored_conversation_shows_its_messages(page, site):
    site.stored["7"] = {"id": "7", "domain": "legal", "title": "Tenancy deposit", "messages": [
        {"id": "a", "role": "user", "content": "Can my landlord keep my deposit?", "reasoning": "",
         "status": "complete", "created_at": "2026-11-28T10:00:00Z", "disclaimer": ""},
        {"id": "b", "role": "assistant", "content": "It depends on your *jurisdiction*.", "reasoning": "",
         "status": "complete", "created_at": "2026-11-28T10:00:05Z",
         "disclaimer": "Not a substitute for the advice of an attorney."},
    ]}
    page.goto("http://verity.test/chat/#c=7")
    page.wait_for_selector("article.message-assistant")
    assert page.locator("#chat-heading").inner_text() == "Tenancy deposit"
    assert page.locator("#domain-badge").inner_text() == "Legal"
    assert last_assistant(page).locator(".bubble em").inner_text() == "jurisdiction"
    assert last_assistant(page).locator(".disclaimer").inner_text() == "Not a substitute for the advice of an attorney."
    page.get_by_role("button", name="New conversation").click()
    assert page.locator("#domain-picker").is_visible()
    assert page.locator("article.message").count() == 0


def test_keyboard_only_user_can_pick_a_topic_and_send(page, site):
    page.keyboard.press("Tab")  # skip link
    page.locator("input[name='domain'][value='finance']").focus()
    page.keyboard.press("ArrowDown")  # radio group: arrows move the choice
    assert page.locator("input[name='domain']:checked").get_attribute("value") == "medical"
    page.get_by_label("Your message").focus()
    page.keyboard.type("What is a fever?")
    page.keyboard.press("Enter")
    wait_done(page)
    assert ("/chat/api/conversations", {"domain": "medical"}) in [(c[1], c[2]) for c in site.calls if c[0] == "POST"]
    assert page.locator("#messages").get_attribute("aria-live") == "polite"


def test_fits_a_phone_width_screen(browser):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    fake = FakeChatSite()
    fake.next_events = [("done", {"message_id": "m", "content": "A " * 400, "reasoning": "", "finish_reason": "stop",
                                  "usage": {}, "disclaimer": DISCLAIMER})]
    fake.open(phone)
    send(phone, "Hi")
    wait_done(phone)
    overflow = phone.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    assert phone.get_by_role("button", name="Send").is_visible()
    assert phone.locator("#sidebar").evaluate("(el) => el.getBoundingClientRect().right") <= 0
    phone.get_by_role("button", name="Conversations").click()
    phone.wait_for_timeout(300)
    assert phone.locator("#sidebar").evaluate("(el) => el.getBoundingClientRect().left") >= 0
    context.close()


def test_dropped_stream_reconnects_and_completes_without_duplicated_text(page, site):
    words = ["Compound ", "interest ", "is ", "interest ", "earned ", "on ", "interest."]
    # `done` without `content` here, so what shows is exactly what the deltas built up on screen.
    site.next_events = [("answer.delta", {"text": w}) for w in words] + [
        ("done", {"message_id": "m2", "finish_reason": "stop", "usage": {}, "disclaimer": DISCLAIMER}),
    ]
    site.cut_after = 3  # the connection drops after "Compound interest is "; the reconnect replays all
    send(page, "What is compound interest?")
    wait_done(page)
    assert site.stream_connections == 2  # the browser came back on its own
    answer = last_assistant(page)
    assert answer.locator(".bubble").inner_text() == "Compound interest is interest earned on interest."
    assert answer.locator(".message-note-error").count() == 0


def test_reopening_a_conversation_mid_answer_follows_the_stream(page, site):
    site.stored["9"] = {"id": "9", "domain": "finance", "title": "Budgeting", "messages": [
        {"id": "u", "role": "user", "content": "How do I budget?", "reasoning": "", "status": "complete",
         "created_at": "2026-11-28T10:00:00Z", "disclaimer": ""},
        {"id": "r9", "role": "assistant", "content": "Start", "reasoning": "", "status": "streaming",
         "created_at": "2026-11-28T10:00:01Z", "disclaimer": ""},
    ]}
    site.next_events = [
        ("answer.delta", {"text": "Start with "}),
        ("answer.delta", {"text": "what you spend."}),
        ("done", {"message_id": "r9", "content": "Start with what you spend.", "reasoning": "",
                  "finish_reason": "stop", "usage": {}, "disclaimer": DISCLAIMER}),
    ]
    with page.expect_request("**/chat/api/replies/r9/events"):
        page.goto("http://verity.test/chat/#c=9")
    wait_done(page)
    assert last_assistant(page).locator(".bubble").inner_text() == "Start with what you spend."
    assert last_assistant(page).locator(".disclaimer").inner_text() == DISCLAIMER
