"""uvicorn's httptools HTTP/1.1 protocol with Blaze's HTTP limits (``server:`` in the config).

uvicorn 0.54 has a keep-alive timeout, but arms it only after a response, so a connection that
never sends a byte stays open forever; ``limit_concurrency`` answers 503 without
``Retry-After`` and counts tasks as well as connections; only its h11 parser bounds the head,
with a 400; nothing times out a slow head or a stalled body. This subclass adds, per
connection (all timers are the event loop's ``call_later``, one per phase at most):

- **idle**: a new connection, like one between two requests, is closed after
  ``keep_alive_timeout_s`` seconds without a byte.
- **head**: the request line and headers must be complete ``head_timeout_s`` seconds after
  their first byte, else 408 (slowloris); larger than ``max_header_bytes`` bytes, 431.
- **body**: while the request body is received, each read must come within
  ``body_read_timeout_s`` seconds of the previous one (or of the head), else 408.
- **connections**: on a connection opened while ``max_connections`` others are open, the
  request is answered 503 with ``Retry-After`` when its head is in, without reaching the app.

No limit can cut a response in progress, so a stream of any length is left alone: a refusal
of a pipelined request is written once the earlier responses on the connection are sent (in
order, as HTTP/1.1 requires), and the body timer stops once the response starts, and waits
while flow control has paused reading or the client waits for its ``100 Continue`` (the app,
not the client, is behind).

A refusal is an OpenAI error body (``errors.py``) with ``Connection: close``, then a lingering
close, as nginx does: the write side is shut and input discarded for up to ``LINGER_S``
seconds, so a client still sending reads the answer rather than a connection reset. A request
the app was reading sees ``http.disconnect``. Each refusal logs one ``http_request_refused``
line (status, code, client address).
"""

from __future__ import annotations

import asyncio
import json
import logging
from asyncio import TimerHandle
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from blaze_ai.config.schema import ServerConfig
from blaze_ai.errors import (
    BlazeError,
    ConnectionLimitError,
    HeaderTooLargeError,
    RequestTimeoutError,
)

logger = logging.getLogger(__name__)

LINGER_S = 2.0
"""Seconds a refused connection keeps discarding input before it is closed."""
CONNECTION_RETRY_AFTER_S = 1.0
"""``Retry-After`` of the 503 sent beyond ``max_connections``, in seconds."""
_HEADER_LINE_OVERHEAD = 4
"""Bytes of ``": "`` and CRLF around each header, counted into the head size."""


class LimitedHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` enforcing the limits of the ``limits`` class attribute.

    uvicorn builds one instance per connection from the class given as ``Config(http=...)``;
    make that class with :meth:`with_limits`.
    """

    limits: ClassVar[ServerConfig] = ServerConfig()

    @classmethod
    def with_limits(cls, limits: ServerConfig) -> type[LimitedHttpProtocol]:
        """A subclass whose connections enforce ``limits``, to pass as ``Config(http=...)``."""
        return cast(type[LimitedHttpProtocol], type(cls.__name__, (cls,), {"limits": limits}))

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.limits.keep_alive_timeout_s  # type: ignore[assignment]
        self._timers: dict[str, TimerHandle] = {}  # phase ("head", "body", "linger") -> timer
        self._reading_head = True
        self._head_bytes = 0  # bytes read since the current head began (see _head_too_large)
        self._head_uncounted = False  # the head began inside an earlier request's read
        self._head_started: float | None = None  # loop time of the current head's first byte
        self._last_body_read = 0.0
        self._over_capacity = False
        self._refused = False  # the request being received is refused: ignore its bytes
        self._deferred: BlazeError | None = None  # its answer, once earlier ones are sent
        self._shutting_down = False

    # Connection events.

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._over_capacity = len(self.connections) > self.limits.max_connections
        self.timeout_keep_alive_task = self.loop.call_later(
            self.limits.keep_alive_timeout_s, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._unset_keepalive_if_required()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: discard
        if self._reading_head:
            if self._head_started is None:  # no byte of the next head yet: count from here
                self._head_bytes, self._head_uncounted = 0, False
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._refused and not self.transport.is_closing():
            self._check_partial_request()

    def _check_partial_request(self) -> None:
        """After a read: refuse a head already too large; time what is left incomplete.

        A request that arrives whole in one read needs no timer; one left incomplete gets its
        head timer (counted from the head's first byte) or its body timer, once."""
        if self._reading_head and self._head_bytes > self.limits.max_header_bytes:
            self._refuse(self._header_too_large())
        elif self._reading_head and self._head_started is not None:
            if "head" not in self._timers:
                elapsed_s = self.loop.time() - self._head_started
                self._arm("head", self.limits.head_timeout_s - elapsed_s, self._head_timed_out)
        elif self.cycle is not None and self.cycle.more_body and "body" not in self._timers:
            self._arm("body", self.limits.body_read_timeout_s, self._body_timed_out)

    def shutdown(self) -> None:
        """The server is stopping: end a lingering close now, and close a connection once its
        request is answered or refused (uvicorn closes the idle ones)."""
        self._shutting_down = True
        if self._refused and not self._response_pending():
            self.transport.close()
            return
        super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deferred is not None and not self._response_pending():
            error, self._deferred = self._deferred, None
            self._answer(error)

    # Parser callbacks (called from ``parser.feed_data``; after a refusal they do nothing).

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._head_started = self.loop.time()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._stop("head")
        self._reading_head, self._head_started = False, None
        if self._head_too_large():
            self._refuse(self._header_too_large())
            return
        if self._over_capacity:
            message = f"{self.limits.max_connections} connections are open; retry later"
            self._refuse(ConnectionLimitError(message, retry_after_s=CONNECTION_RETRY_AFTER_S))
            return
        super().on_headers_complete()
        self._last_body_read = self.loop.time()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)
        self._last_body_read = self.loop.time()

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._stop("body")
        self._reading_head, self._head_bytes, self._head_uncounted = True, 0, True

    # Timers.

    def _head_timed_out(self) -> None:
        """The head is late: 408."""
        del self._timers["head"]
        timeout_s = self.limits.head_timeout_s
        self._refuse(RequestTimeoutError(f"the request head took over {timeout_s} s"))

    def _body_timed_out(self) -> None:
        """No body read for ``body_read_timeout_s``: 408, unless reading is over or paused."""
        del self._timers["body"]
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_started:
            return  # the body is in, or the answer has started: nothing to time out
        now, timeout_s = self.loop.time(), self.limits.body_read_timeout_s
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._last_body_read = now  # the app is behind, not the client
        idle_s = now - self._last_body_read
        if idle_s < timeout_s:
            self._arm("body", timeout_s - idle_s, self._body_timed_out)
            return
        cycle.disconnected = True  # the app's receive() now answers http.disconnect
        cycle.message_event.set()
        self._refuse(RequestTimeoutError(f"no request body byte for {timeout_s} s"))

    def _arm(self, phase: str, delay_s: float, callback: Callable[[], None]) -> None:
        """Call ``callback`` in ``delay_s`` seconds, replacing ``phase``'s timer (the head and
        body callbacks remove their own entry first)."""
        self._stop(phase)
        self._timers[phase] = self.loop.call_later(delay_s, callback)

    def _stop(self, phase: str) -> None:
        timer = self._timers.pop(phase, None)
        if timer is not None:
            timer.cancel()

    # Refusals.

    def _head_too_large(self) -> bool:
        """Whether the head just parsed is over ``max_header_bytes``. The bytes read since it
        began bound it from above, so it is measured only when they exceed the limit, or when
        some were not counted (a pipelined head that began inside an earlier request's read)."""
        limit = self.limits.max_header_bytes
        if not self._head_uncounted and self._head_bytes <= limit:
            return False
        return _head_size(self.url, self.headers) > limit

    def _header_too_large(self) -> HeaderTooLargeError:
        limit = self.limits.max_header_bytes
        return HeaderTooLargeError(f"the request head is over the limit of {limit} bytes")

    def _response_pending(self) -> bool:
        """Whether an earlier request on this connection is still being answered (``cycle``
        is the latest request handed to the app; uvicorn answers them in order)."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete and not cycle.disconnected

    def _refuse(self, error: BlazeError) -> None:
        """Refuse the request being received: answer ``error`` now, or once the responses to
        earlier requests on the connection are sent (HTTP/1.1 answers in order)."""
        self._refused = True
        self._stop("head")
        self._stop("body")
        self._unset_keepalive_if_required()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        logger.warning(
            "http_request_refused",
            extra={"status": error.status_code, "code": error.code, "client": client},
        )
        if self._response_pending():
            self._deferred = error
            return
        self._answer(error)

    def _answer(self, error: BlazeError) -> None:
        """Write ``error``'s response and close: lingering, or at once when shutting down."""
        self._unset_keepalive_if_required()
        if self.transport.is_closing():
            return
        self.transport.write(error_bytes(error, self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self._shutting_down:
            self.transport.close()  # after the answer is written; no lingering now
            return
        self.flow.resume_reading()  # read, to discard, until the client closes or time is up
        self._arm("linger", LINGER_S, self.transport.close)


def error_bytes(error: BlazeError, default_headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 response for ``error``: its status, OpenAI JSON body, ``Retry-After``
    when it has one, and ``Connection: close``; ``default_headers`` (date, server) first."""
    body = json.dumps(error.to_dict()).encode()
    headers = [
        *default_headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    retry_after = error.retry_after_header()
    if retry_after is not None:
        headers.append((b"retry-after", retry_after.encode()))
    lines = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return STATUS_LINE[error.status_code] + lines + b"\r\n" + body


def _head_size(url: bytes, headers: Sequence[tuple[bytes, bytes]]) -> int:
    """Bytes of a parsed head: the target and each header's name and value, with separators."""
    return len(url) + sum(len(n) + len(v) + _HEADER_LINE_OVERHEAD for n, v in headers)
