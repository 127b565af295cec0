"""ASGI middleware: request ids, the body size limit, one access-log line per request, and the
record of each model request (with its ``X-Blaze-Overhead-Ms`` header, and its trace).

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through unbuffered and the
access line of a stream is written when the stream ends, with its token counts.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blaze_ai.api.disconnect import ClientDisconnectedError
from blaze_ai.api.errors import error_response, note_error
from blaze_ai.errors import InvalidRequestError, PayloadTooLargeError
from blaze_ai.logs import printable
from blaze_ai.observability.request import RequestRecord

if TYPE_CHECKING:
    from blaze_ai.observability.tracing import Tracing

access_log = structlog.get_logger()
"""The per-request line goes through structlog's native logger: the cheapest structured path
(see ``blaze_ai/logs.py``)."""

REQUEST_ID_HEADER = "x-request-id"
OVERHEAD_HEADER = b"x-blaze-overhead-ms"
"""Milliseconds of the request, until its response head, spent outside engines and upstreams
(for a stream: until its first chunk was ready)."""
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics", "/admin/dashboard"})
"""Polled paths (probes, scrapes, the open dashboard every 2 s): their successful requests are
logged at debug, so they do not drown the access log."""

FinishHook = Callable[[Scope, int, float], Awaitable[None]]
"""``(scope, status, latency_s)``, awaited once a response has ended."""


class RequestContextMiddleware:
    """Give each HTTP request an id, bound its body, and log it once when its response ends.

    The id is the client's ``X-Request-ID`` when it is a sane token, else a new UUID; it is
    returned as ``X-Request-ID`` and stored in ``request.state.request_id``. Routes add fields
    (model, token counts) to the ``request.state.log`` dict for the access line;
    ``request.state.started_at`` is the :func:`time.perf_counter` reading taken when the
    request arrived.

    A request to one of ``recorded_paths`` (the model endpoints, when metrics or tracing are
    on) also gets a :class:`~blaze_ai.observability.request.RequestRecord` in
    ``request.state.record``, which the gateway fills in, and an ``X-Blaze-Overhead-Ms``
    header once it names its model (when metrics are on). With ``tracing``, the record also
    carries the request's trace, whose server span starts here (a child of the request's
    ``traceparent``) and ends in ``on_finish``; its trace id goes on the access line.

    Args:
        app: the wrapped ASGI app.
        max_body_bytes: larger bodies are refused with 413 before the app sees them.
        on_finish: awaited once the response has ended (after the access line) with the
            scope, the status (499: the client went away) and the latency in seconds; it
            must not raise. Tenancy settles limits and records usage there, metrics observe.
        recorded_paths: the paths whose requests get a record.
        overhead_header: send ``X-Blaze-Overhead-Ms`` (metrics on).
        tracing: traces the recorded requests (None: tracing off).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        on_finish: FinishHook | None = None,
        recorded_paths: frozenset[str] = frozenset(),
        overhead_header: bool = True,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.on_finish = on_finish
        self.recorded_paths = recorded_paths
        self.overhead_header = overhead_header
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        fields: dict[str, Any] = {}
        state["log"] = fields
        started = time.perf_counter()
        state["started_at"] = started
        status = {"code": 0, "logged": False}
        record = self._record(scope, started, request_id)
        timed = record if self.overhead_header else None

        async def finish() -> None:
            if status["logged"]:
                return
            status["logged"] = True
            latency_s = time.perf_counter() - started
            _log_access(scope, request_id, status["code"], latency_s, fields)
            if self.on_finish is not None:
                await self.on_finish(scope, status["code"], latency_s)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = _head(message, request_id, timed)
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                await finish()

        try:
            body = await _read_body(scope, receive, self.max_body_bytes)
        except (PayloadTooLargeError, InvalidRequestError) as exc:
            note_error(scope, exc)
            await error_response(exc)(scope, receive, send_with_id)
            return
        except ClientDisconnectedError:  # gone, or timed out by the server, mid-body
            status["code"] = 499
            await finish()
            return
        try:
            await self.app(scope, _replay(body, receive), send_with_id)
        finally:
            if not status["logged"]:
                status["code"] = status["code"] or 499  # client went away before the answer
                await finish()

    def _record(self, scope: Scope, started: float, request_id: str) -> RequestRecord | None:
        """The record of a request to one of the recorded paths (with its trace started when
        tracing is on), kept in ``request.state.record``; None for other paths."""
        if scope["path"] not in self.recorded_paths:
            return None
        state = scope["state"]
        record = state["record"] = RequestRecord(scope["path"], started)
        if self.tracing is not None:
            record.trace = self.tracing.start(scope, request_id)
            state["log"]["trace_id"] = record.trace.trace_id
        return record


def _head(
    message: Message, request_id: str, record: RequestRecord | None
) -> list[tuple[bytes, bytes]]:
    """The response head's headers, with ``X-Request-ID`` and, for a request whose model is
    known, ``X-Blaze-Overhead-Ms``."""
    headers = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
    if record is not None and record.model:
        overhead_ms = record.overhead_s(time.perf_counter()) * 1000
        headers.append((OVERHEAD_HEADER, b"%.3f" % overhead_ms))
    return headers


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
    return os.urandom(16).hex()


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """Read the whole body (None for methods without one), refusing more than ``limit`` bytes.

    Raises:
        PayloadTooLargeError: the body (declared or received) is over ``limit`` bytes.
        InvalidRequestError: the ``Content-Length`` header is not a number.
        ClientDisconnectedError: the connection ended before the body did (the client left,
            or the server timed the body out: ``server.body_read_timeout_s``).
    """
    if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return None
    declared = _content_length(scope)
    if declared is not None and declared > limit:
        raise PayloadTooLargeError(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnectedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise InvalidRequestError("invalid Content-Length header") from None
    return None


def _replay(body: bytes | None, receive: Receive) -> Receive:
    """A ``receive`` that yields the already-read body once, then the client's later messages."""
    if body is None:
        return receive
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _log_access(
    scope: Scope, request_id: str, status: int, latency_s: float, fields: dict[str, Any]
) -> None:
    path = scope.get("path", "")
    log = access_log.debug if path in _QUIET_PATHS and status < 400 else access_log.info
    log(
        "request",
        logger="blaze_ai.access",
        request_id=request_id,
        method=scope.get("method"),
        path=printable(path),
        status=status,
        latency_ms=round(latency_s * 1000, 2),
        **{k: printable(v) if isinstance(v, str) else v for k, v in fields.items()},
    )
