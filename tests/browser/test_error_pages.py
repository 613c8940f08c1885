"""The error pages (templates/errors/) render with the context Django gives them and look like Verity.

Django renders 500.html with no context at all and 404/403_csrf with a bare one, so each page must
work with nothing but the static tag. Each is loaded in Chromium under the real CSP: the heading a
person reads, the way back to the chat, the stylesheet applied, and no console error.
"""

from __future__ import annotations

import pytest

from .fake_site import ORIGIN, STATIC_DIR

pytestmark = pytest.mark.browser

PAGES = {
    "errors/404.html": "Page not found",
    "errors/500.html": "Something went wrong",
    "errors/403_csrf.html": "Please reload the page",
}


@pytest.mark.parametrize(("template_name", "heading"), PAGES.items())
def test_error_page_renders_without_context_and_styled(page, page_log, template_name, heading):
    from django.template import loader

    from apps.core.middleware import CONTENT_SECURITY_POLICY

    html = loader.get_template(template_name).render()  # exactly how server_error renders 500.html

    def handle(route):
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/error":
            route.fulfill(status=200, content_type="text/html", body=html,
                          headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
        elif path.startswith("/static/") and (STATIC_DIR / path.removeprefix("/static/")).is_file():
            route.fulfill(status=200, body=(STATIC_DIR / path.removeprefix("/static/")).read_bytes(),
                          content_type="text/css" if path.endswith(".css") else "image/svg+xml")
        else:
            route.abort()

    page.route("**/*", handle)
    page.goto(f"{ORIGIN}/error")
    assert page.get_by_role("heading", level=1).inner_text() == heading
    assert page.get_by_role("link", name="chat").or_(page.get_by_role("link", name="conversations")).count() >= 1
    # The stylesheet applied: the header has the surface colour from chat.css, not the UA default.
    assert page.locator(".site-header").evaluate("(el) => getComputedStyle(el).borderBottomStyle") == "solid"
    assert page_log.console_errors == [] and page_log.page_errors == []
