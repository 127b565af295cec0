"""The request path's side of tracing: what the gateway, the router and the engines call.

Tracing itself (OpenTelemetry's SDK) is :mod:`blaze_ai.observability.tracing`, imported only
when ``tracing.otlp_endpoint`` is set. This module imports neither it nor OpenTelemetry, so an
untraced server loads neither and pays no more than an ``is None`` check per step:
:func:`span` returns :data:`NO_SPAN`, a shared do-nothing context manager, when the request
has no trace.

The trace context of the engine call running now travels to the remote engine in a context
variable (:class:`Outgoing`, read by :func:`outgoing_headers`): it is set and reset around one
``await`` of the engine by the router, never across a ``yield``, so each set is undone in the
context that made it.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from blaze_ai.observability.request import RequestRecord

ADMISSION = "admission"
"""The span of a request's admission: its key's limits, then an admission slot."""
CACHE_LOOKUP = "cache lookup"
"""The span of a response-cache lookup (only when the request's plan looks up)."""
CACHE_STATUS = "blaze.cache.status"
"""Attribute of the cache lookup span: ``hit-memory``, ``hit-disk``, ``hit-redis`` or ``miss``."""

AttributeValue = str | bool | int | float


class SpanScope(Protocol):
    """A child span of a request, ended when its ``with`` block ends (an exception that leaves
    the block is noted on it as ``error.type``)."""

    def __enter__(self) -> SpanScope: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def set(self, key: str, value: AttributeValue) -> None:
        """Set one attribute of the span."""


class _NoSpan:
    """The span of an untraced request: does nothing."""

    __slots__ = ()

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def set(self, key: str, value: AttributeValue) -> None:
        """Nothing to set."""


NO_SPAN: SpanScope = _NoSpan()
"""The shared span of untraced requests (stateless)."""


def span(record: RequestRecord | None, name: str) -> SpanScope:
    """A child span ``name`` of the request's server span, to use as ``with span(...) as s:``;
    :data:`NO_SPAN` when the request is not traced."""
    trace = record.trace if record is not None else None
    return NO_SPAN if trace is None else trace.child(name)


_OUTGOING: ContextVar[Mapping[str, str] | None] = ContextVar("blaze_outgoing_trace", default=None)


def outgoing_headers() -> Mapping[str, str] | None:
    """The trace headers (W3C ``traceparent``, ``tracestate``) that the engine call running now
    sends upstream; None when it is not traced."""
    return _OUTGOING.get()


class Outgoing:
    """Within its ``with`` block, :func:`outgoing_headers` returns ``headers``.

    Enter and exit it in the same step of a coroutine (around an ``await``, never across a
    generator's ``yield``).
    """

    __slots__ = ("_headers", "_token")

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers
        self._token: Token[Mapping[str, str] | None] | None = None

    def __enter__(self) -> Outgoing:
        self._token = _OUTGOING.set(self._headers)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            _OUTGOING.reset(self._token)
            self._token = None
