"""static/chat/markdown.js in a real Chromium: model text renders as safe, inert Markdown.

The renderer is loaded as the ES module the chat page imports, on a blank page served under the
project's real Content-Security-Policy. Hostile answers (script tags, event-handler attributes,
javascript: links, remote images) must render as text: nothing executes and no request leaves.
"""

from __future__ import annotations

import pytest

from .fake_site import ORIGIN, STATIC_DIR

pytestmark = pytest.mark.browser

HOSTILE = """# Compound interest

Interest earns interest. <script>window.__pwned = 'script'</script>

<img src="http://tracker.example/pixel.png" onerror="window.__pwned = 'img'">

![chart](http://tracker.example/chart.png) and ![local](/static/chat/chat.css)

[click me](javascript:window.__pwned='link') and [data](data:text/html,<script>alert(1)</script>)

<a href="http://evil.example" onclick="window.__pwned='a'">raw anchor</a>
<iframe src="http://evil.example/frame"></iframe>
"""

FEATURES = """## Compound interest

It is **interest on interest**, with *time* doing the work and `A = P(1 + r/n)^(nt)`.

- principal
- rate
  continued line

1. save
2. wait

> Past returns do not guarantee future results.

| Year | Balance |
|------|---------|
| 1    | 1,050   |

```python
print("<b>not bold</b>")
```

Read [the SEC's guide](https://www.investor.gov/compound) and keep snake_case_words intact.
"""


@pytest.fixture
def md_page(page):
    """A blank page on the fake origin that serves static/ and nothing else, with markdown.js imported."""
    from apps.core.middleware import CONTENT_SECURITY_POLICY

    leaks: list[str] = []

    def handle(route):
        url = route.request.url
        if url == f"{ORIGIN}/blank":
            route.fulfill(status=200, content_type="text/html", body="<!doctype html><main id='out'></main>",
                          headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
        elif url == f"{ORIGIN}/static/chat/markdown.js":
            route.fulfill(status=200, content_type="text/javascript",
                          body=(STATIC_DIR / "chat" / "markdown.js").read_bytes())
        else:
            leaks.append(url)
            route.abort()

    page.route("**/*", handle)
    page.goto(f"{ORIGIN}/blank")
    page.evaluate("async () => { window.md = await import('/static/chat/markdown.js'); }")
    page.leaks = leaks
    return page


def render(page, text: str) -> None:
    page.evaluate("(text) => window.md.renderInto(document.getElementById('out'), text)", text)


def test_hostile_markdown_renders_inert(md_page, page_log):
    render(md_page, HOSTILE)
    md_page.wait_for_timeout(300)  # give a stray script or image load the chance to happen

    out = md_page.locator("#out")
    assert md_page.evaluate("window.__pwned") is None
    for tag in ("script", "img", "iframe", "object", "embed", "style", "link"):
        assert out.locator(tag).count() == 0, f"a <{tag}> element was created from model text"
    # The raw markup stays visible as text, so the reader sees what the model wrote.
    text = out.inner_text()
    assert "<script>window.__pwned = 'script'</script>" in text
    assert "[image: chart]" in text and "[image: local]" in text
    # No anchor carries a script or data URL, and none of them carries an event handler.
    hrefs = out.locator("a").evaluate_all("(as) => as.map((a) => a.getAttribute('href'))")
    assert all(h.startswith(("http://", "https://", "mailto:")) for h in hrefs), hrefs
    handlers = out.evaluate("(el) => [...el.querySelectorAll('*')].flatMap((n) => "
                            "[...n.attributes].map((a) => a.name)).filter((n) => n.startsWith('on'))")
    assert handlers == []
    # Nothing left the page: not the tracker image, not the stylesheet named in the image link.
    assert md_page.leaks == []
    assert [u for u in page_log.requests if "tracker" in u or "evil" in u or u.endswith(".png")] == []


def test_markdown_features_render_as_elements(md_page):
    render(md_page, FEATURES)
    out = md_page.locator("#out")
    assert out.locator("h4").inner_text() == "Compound interest"
    assert out.locator("strong").first.inner_text() == "interest on interest"
    assert out.locator("em").first.inner_text() == "time"
    assert out.locator("p code").first.inner_text() == "A = P(1 + r/n)^(nt)"
    assert out.locator("ul > li").count() == 2
    assert "continued line" in out.locator("ul > li").nth(1).inner_text()
    assert out.locator("ol > li").all_inner_texts() == ["save", "wait"]
    assert "guarantee" in out.locator("blockquote").inner_text()
    assert out.locator("table th").all_inner_texts() == ["Year", "Balance"]
    assert out.locator("table td").all_inner_texts() == ["1", "1,050"]
    assert out.locator("pre code").inner_text() == 'print("<b>not bold</b>")'
    assert out.locator("pre b").count() == 0
    link = out.locator("a")
    assert link.get_attribute("href") == "https://www.investor.gov/compound"
    assert "noopener" in link.get_attribute("rel") and "noreferrer" in link.get_attribute("rel")
    assert "snake_case_words" in out.inner_text()


def test_every_prefix_of_a_streamed_answer_renders(md_page):
    """The page re-renders on every delta, so half-finished Markdown must never throw or leak markup."""
    text = FEATURES + HOSTILE
    failures = md_page.evaluate(
        """(text) => {
            const out = document.getElementById('out');
            const failures = [];
            for (let i = 0; i <= text.length; i += 3) {
                try { window.md.renderInto(out, text.slice(0, i)); }
                catch (err) { failures.push(i + ': ' + err); }
                if (out.querySelector('script, img, iframe')) failures.push(i + ': active element');
            }
            return failures;
        }""",
        text,
    )
    assert failures == []
    assert md_page.evaluate("window.__pwned") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.org/a?b=1", "https://example.org/a?b=1"),
        ("mailto:help@example.org", "mailto:help@example.org"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)", None),
        ("data:text/html,x", None),
        ("/relative/path", None),
        ("//evil.example/x", None),
    ],
)
def test_only_absolute_web_and_mail_links_are_kept(md_page, url, expected):
    assert md_page.evaluate("(u) => window.md.safeUrl(u)", url) == expected
