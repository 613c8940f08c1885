"""Serve a blocking SSE generator from both server kinds without buffering it.

Under WSGI (runserver, the test live server) Django iterates a sync generator directly. Under ASGI
(uvicorn) Django would collect a sync generator into a list before sending, so the generator runs on a
thread of its own and hands each frame to the event loop as soon as it exists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import StreamingHttpResponse

_END = object()


async def _threaded(frames: Iterator[bytes]) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def run() -> None:
        try:
            for frame in frames:
                loop.call_soon_threadsafe(queue.put_nowait, frame)
        except BaseException as exc:  # handed to the event loop, which raises it there
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            connections.close_all()  # this thread's database connection dies with it
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    threading.Thread(target=run, name="verity-sse", daemon=True).start()
    while True:
        item = await queue.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def sse_response(request: Any, frames: Iterator[bytes], headers: dict[str, str] | None = None) -> StreamingHttpResponse:
    django_request = getattr(request, "_request", request)
    content = _threaded(frames) if isinstance(django_request, ASGIRequest) else frames
    response = StreamingHttpResponse(content, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass frames through as they come
    for name, value in (headers or {}).items():
        response[name] = value
    return response
