"""``RequestContextMiddleware``: a body cut short never reaches the app."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from blaze_ai.api.middleware import RequestContextMiddleware


async def test_a_disconnect_mid_body_ends_the_request_without_calling_the_app() -> None:
    """A client gone mid-body, or one the server timed out (``body_read_timeout_s``), must not
    have its truncated body parsed and answered (formerly a 400 for the half JSON)."""
    calls: list[Scope] = []
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope)

    messages: list[Message] = [
        {"type": "http.request", "body": b'{"model": ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await RequestContextMiddleware(app, max_body_bytes=1024)(scope, receive, send)
    assert calls == [] and sent == []
