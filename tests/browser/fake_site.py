"""A scripted stand-in for the chat JSON API and SSE stream, served to Chromium through page.route.

The page under test is the real one: `templates/chat/index.html` rendered by Django's template
engine, the real `static/chat/*.js|css`, and the real Content-Security-Policy header from
`apps.core.middleware`. Only the backend's answers are scripted, so the page's handling of every
event (reasoning, retract, error, done with disclaimer) and of API errors is tested
deterministically, without the model. Every request the page makes is recorded; anything outside
the fake origin is aborted and recorded as a leak.
"""

from __future__ import annotations

import json
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

ORIGIN = "http://verity.test"
REPO = Path(__file__).resolve().parents[2]
STATIC_DIR = REPO / "static"

DOMAINS = [
    {"slug": "finance", "title": "Finance", "description": "Saving, borrowing, investing basics and scam awareness."},
    {"slug": "medical", "title": "Medical", "description": "General health information and when to see a clinician."},
    {"slug": "legal", "title": "Legal", "description": "General legal information with jurisdiction caveats."},
]


def sse(events: list[tuple[str, dict[str, Any]]], *, retry_ms: int = 100) -> str:
    """Encode (event, data) pairs as SSE frames with ids 1, 2, ... as the backend does.

    A short `retry` makes the browser reconnect quickly when a test cuts the stream.
    """
    frames = [
        f"id: {index}\nevent: {name}\ndata: {json.dumps(data)}\n\n"
        for index, (name, data) in enumerate(events, 1)
    ]
    return f"retry: {retry_ms}\n\n" + "".join(frames)


class _User:
    is_authenticated = True

    def get_username(self) -> str:
        return "demo-customer"


def render_chat_page(conversations: list[dict[str, Any]] | None = None) -> str:
    """The chat page as the view renders it, via the project's template settings."""
    from django.template.loader import render_to_string

    context = {"domains": DOMAINS, "conversations": conversations or [], "user": _User()}
    return render_to_string("chat/index.html", context)


@dataclass
class FakeChatSite:
    """Routes `ORIGIN` for one page; tests script `next_events`, `message_error` and inspect `calls`."""

    conversations: list[dict[str, Any]] = field(default_factory=list)
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    message_error: tuple[int, dict[str, Any]] | None = None
    # Cut the first stream connection after this many frames (a dropped connection mid-answer).
    cut_after: int | None = None
    stream_connections: int = 0
    # Frames the conversation's own stream (`.../conversations/<id>/events`) sends on each connect.
    conversation_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    last_query: str = ""
    last_format: str = "md"

    def install(self, page) -> None:
        page.route("**/*", self._handle)

    def open(self, page) -> None:
        self.install(page)
        page.goto(f"{ORIGIN}/chat/")
        page.wait_for_selector("body[data-chat-ready='true']")

    # -- routing ---------------------------------------------------------------------------------

    def _handle(self, route) -> None:
        request = route.request
        url = urlparse(request.url)
        if f"{url.scheme}://{url.netloc}" != ORIGIN:
            self.leaks.append(request.url)
            route.abort()
            return
        body = None
        if request.post_data:
            try:
                body = json.loads(request.post_data)
            except ValueError:
                body = request.post_data
        self.calls.append((request.method, url.path, body))
        query = parse_qs(url.query)
        self.last_query = query.get("q", [""])[0]
        self.last_format = query.get("format", ["md"])[0]
        if url.path == "/chat/":
            from apps.core.middleware import CONTENT_SECURITY_POLICY

            route.fulfill(status=200, content_type="text/html; charset=utf-8", body=render_chat_page(self.conversations),
                          headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})
        elif url.path.startswith("/static/"):
            self._static(route, url.path.removeprefix("/static/"))
        elif url.path.startswith("/chat/api/"):
            self._api(route, request.method, url.path.removeprefix("/chat/api/"), body)
        else:
            route.fulfill(status=404, content_type="text/plain", body="not found")

    def _static(self, route, relative: str) -> None:
        path = (STATIC_DIR / relative).resolve()
        if STATIC_DIR not in path.parents or not path.is_file():
            route.fulfill(status=404, body="")
            return
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".js":
            content_type = "text/javascript"
        route.fulfill(status=200, content_type=content_type, body=path.read_bytes())

    def _json(self, route, status: int, payload: dict[str, Any]) -> None:
        route.fulfill(status=status, content_type="application/json", body=json.dumps(payload))

    def _api(self, route, method: str, path: str, body: Any) -> None:
        parts = [p for p in path.split("/") if p]
        if parts == ["conversations"] and method == "POST":
            domain = (body or {}).get("domain")
            if domain not in {d["slug"] for d in DOMAINS}:
                self._json(route, 400, {"error": {"code": "unknown_domain", "message": f"Unknown domain {domain!r}."}})
                return
            conversation = {"id": str(len(self.stored) + 1), "domain": domain, "title": "", "pack_version": 1}
            self.stored[conversation["id"]] = {**conversation, "messages": []}
            self._json(route, 201, conversation)
        elif parts == ["conversations"]:
            listed = [{k: c[k] for k in ("id", "domain", "title")} for c in self.stored.values()] + self.conversations
            query = (self.last_query or "").lower()
            self._json(route, 200, {"conversations": [c for c in listed if query in (c["title"] or "").lower()]})
        elif len(parts) == 2 and parts[0] == "conversations":
            conversation = self.stored.get(parts[1])
            if conversation is None:
                self._json(route, 404, {"error": {"code": "not_found", "message": "No such conversation."}})
            elif method == "DELETE":
                del self.stored[parts[1]]
                route.fulfill(status=204, body="")
            elif method == "PATCH":
                title = ((body or {}).get("title") or "").strip()
                if not title or len(title) > 200:
                    self._json(route, 400, {"error": {"code": "validation_error", "field": "title",
                                                      "message": "Field 'title' must not be empty."}})
                    return
                conversation["title"] = title
                self._json(route, 200, conversation)
            else:
                self._json(route, 200, conversation)
        elif len(parts) == 3 and parts[0] == "conversations" and parts[2] == "events":
            route.fulfill(status=200, content_type="text/event-stream",
                          body=sse(self.conversation_events, retry_ms=600_000), headers={"Cache-Control": "no-cache"})
        elif len(parts) == 3 and parts[0] == "conversations" and parts[2] == "regenerate" and method == "POST":
            reply_id = f"r{len(self.calls)}"
            self._json(route, 202, {"message_id": "m1", "reply_id": reply_id,
                                    "events_url": f"/chat/api/replies/{reply_id}/events"})
        elif len(parts) == 3 and parts[0] == "conversations" and parts[2] == "handoff" and method == "POST":
            self._json(route, 201, {"id": "h1", "status": "open", "kind": "human", "created_at": "2026-11-28T10:00:00Z"})
        elif len(parts) == 3 and parts[0] == "conversations" and parts[2] == "export":
            fmt = self.last_format or "md"
            route.fulfill(status=200, content_type="text/markdown" if fmt == "md" else "application/json",
                          body="# Export\n" if fmt == "md" else "{}",
                          headers={"Content-Disposition": f'attachment; filename="verity-export.{fmt}"'})
        elif len(parts) == 3 and parts[0] == "messages" and parts[2] == "feedback" and method == "POST":
            rating = (body or {}).get("rating")
            self._json(route, 201, {"id": "f1", "message_id": parts[1], "rating": rating,
                                    "reason": (body or {}).get("reason", "")})
        elif len(parts) == 3 and parts[2] == "messages" and method == "POST":
            if self.message_error:
                status, payload = self.message_error
                self._json(route, status, payload)
                return
            reply_id = f"r{len(self.calls)}"
            self._json(route, 202, {"message_id": "m1", "reply_id": reply_id,
                                    "events_url": f"/chat/api/replies/{reply_id}/events"})
        elif len(parts) == 3 and parts[0] == "replies" and parts[2] == "events":
            self._events(route)
        elif len(parts) == 3 and parts[0] == "replies" and parts[2] == "cancel":
            self._json(route, 202, {"status": "cancelling"})
        else:
            self._json(route, 404, {"error": {"code": "not_found", "message": "Not found."}})

    def _events(self, route) -> None:
        # Chromium adds Last-Event-ID below the layer Playwright intercepts, so this fake cannot
        # honour it: a reconnect replays every frame, the harder case for the page (it must drop the
        # frames it has already shown). The real relay's resume is tested against the server.
        self.stream_connections += 1
        events = self.next_events
        if self.stream_connections == 1 and self.cut_after is not None:
            events = events[: self.cut_after]
        route.fulfill(status=200, content_type="text/event-stream", body=sse(events),
                      headers={"Cache-Control": "no-cache"})
