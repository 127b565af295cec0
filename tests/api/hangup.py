"""A client that hangs up: one request sent straight to the ASGI app, then ``http.disconnect``.

``httpx.ASGITransport`` reads whole responses and never disconnects early, so these tests speak
ASGI themselves, as uvicorn does: the body in one ``http.request`` message, then, once the
test's condition holds, the ``http.disconnect`` that uvicorn sends when the socket closes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message

POLL_S = 0.002
"""Seconds between two checks of the hang-up condition."""


@dataclass
class Exchange:
    """What the app sent back before and after the client went away."""

    messages: list[Message] = field(default_factory=list)

    @property
    def status(self) -> int | None:
        """The status of ``http.response.start`` (None if the app never started an answer)."""
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def body(self) -> bytes:
        """Every body byte sent."""
        return b"".join(
            m.get("body", b"") for m in self.messages if m["type"] != "http.response.start"
        )


def _scope(
    path: str, body: bytes, request_id: str, extra_headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    headers = [
        *extra_headers,
        (b"host", b"blaze"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
        (b"cache-control", b"no-cache, no-store"),  # every answer comes from an engine
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("blaze", 80),
    }


async def hang_up(
    app: ASGIApp,
    path: str,
    body: dict[str, Any],
    when: Callable[[Exchange], bool],
    *,
    request_id: str = "hangup-1",
    timeout_s: float = 20.0,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> Exchange:
    """POST ``body`` to ``app`` at ``path``; disconnect as soon as ``when(exchange)`` is true;
    return once the app has finished with the request.

    Raises:
        TimeoutError: the condition never held, or the app kept the request ``timeout_s``
            seconds after the hang-up.
    """
    raw = json.dumps(body).encode()
    exchange = Exchange()
    gone = asyncio.Event()
    pending = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> Message:
        if pending:
            return pending.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        exchange.messages.append(message)

    scope = _scope(path, raw, request_id, extra_headers or [])
    task = asyncio.create_task(app(scope, receive, send))
    async with asyncio.timeout(timeout_s):
        while not when(exchange):
            assert not task.done(), f"the app answered before the hang-up: {exchange.body!r}"
            await asyncio.sleep(POLL_S)
        gone.set()
        await task
    return exchange


def text_events(exchange: Exchange) -> int:
    """SSE events sent so far that carry text (chat ``delta.content`` or completion ``text``)."""
    count = 0
    for line in exchange.body.split(b"\n"):
        if not line.startswith(b"data: {"):
            continue
        for choice in json.loads(line[6:]).get("choices", ()):
            count += bool(choice.get("text") or choice.get("delta", {}).get("content"))
    return count
