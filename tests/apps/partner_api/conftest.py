"""Fixtures for the partner API: issued keys, a generation worker, and the official `openai` client.

`inline_worker` runs each reply's generation on a thread of the test process as soon as the turn
commits (the stand-in for the Celery worker where the engine is not the subject); the end-to-end test
uses a real Celery worker and the real bundled model instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _fresh_limiter() -> Iterator[None]:
    from apps.partner_api.ratelimit import limiter_reset

    limiter_reset()
    yield
    limiter_reset()


@pytest.fixture
def issue(transactional_db: Any, packs: Any):
    """issue(name=..., tenant_slug=..., **limits) -> (plaintext, ApiKey)."""
    from apps.accounts.services import tenant_get_or_create
    from apps.apikeys.services import api_key_create

    def make(name: str = "partner", tenant_slug: str = "demo", **kwargs: Any) -> tuple[str, Any]:
        kwargs.setdefault("requests_per_minute", 10_000)
        kwargs.setdefault("tokens_per_minute", 10_000_000)
        tenant = tenant_get_or_create(slug=tenant_slug, name=tenant_slug.title())
        issued = api_key_create(tenant=tenant, name=name, **kwargs)
        return issued.plaintext, issued.api_key

    return make


@pytest.fixture
def inline_worker(monkeypatch: pytest.MonkeyPatch, fake_engine: Any) -> Any:
    """Generate each committed reply on a thread (fake engine); returns the engine to tune it."""
    from django.db import close_old_connections

    from apps.conversations import dispatch
    from apps.conversations.services import reply_generate

    threads: list[threading.Thread] = []

    def enqueue(reply_id: str) -> None:
        def run() -> None:
            close_old_connections()
            try:
                reply_generate(reply_id=reply_id)
            finally:
                close_old_connections()

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(dispatch, "reply_enqueue", enqueue)
    yield fake_engine
    for thread in threads:
        thread.join(timeout=30)


@pytest.fixture
def real_inline_worker(monkeypatch: pytest.MonkeyPatch, real_model: Any, settings: Any) -> Any:
    """Generate each committed reply on a thread of the test process with the REAL bundled model.

    The same `reply_generate` a Celery worker runs (safety output stage, audit), minus the broker, so
    that sampling tests pay for the model load once per session instead of once per worker process.
    New tokens are capped at 48 to keep the 2-core machine usable.
    """
    settings.VERITY_MAX_NEW_TOKENS = 48
    from django.db import close_old_connections

    from apps.conversations import dispatch
    from apps.conversations.services import reply_generate

    threads: list[threading.Thread] = []

    def enqueue(reply_id: str) -> None:
        def run() -> None:
            close_old_connections()
            try:
                reply_generate(reply_id=reply_id)
            finally:
                close_old_connections()

        thread = threading.Thread(target=run, daemon=True)
        threads.append(thread)
        thread.start()

    monkeypatch.setattr(dispatch, "reply_enqueue", enqueue)
    yield
    for thread in threads:
        thread.join(timeout=120)


@pytest.fixture
def client_for(live_server: Any):
    """client_for(key) -> an unmodified openai.OpenAI pointed at the live server."""
    import openai

    def make(key: str, **kwargs: Any) -> openai.OpenAI:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 120)
        return openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=key, **kwargs)

    return make


def bearer(key: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}
