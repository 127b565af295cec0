"""Stop work that nobody will read, and say so once: a client that hangs up mid-request.

Streams are cancelled by :class:`~blaze_ai.api.sse.EventStreamResponse` when the client
disconnects (the generators are closed); a plain request, or a stream still waiting for its
first item, would otherwise run to its end. :func:`cancel_on_disconnect` runs the work next to
a watcher of the ASGI ``http.disconnect`` message and cancels the work when it comes first, so
the engine frees the request's place at its next step.

A hang-up is an ordinary event, not an error: :func:`log_client_disconnect` writes one
``client_disconnected`` line at info (request id, model, endpoint, phase, elapsed seconds; never
the prompt, no traceback) and marks the request's access line with ``client_disconnected``.
The gateway counts it per deployment (``client_disconnects_total`` in ``/admin/deployments``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Literal, TypeVar

from fastapi import Request
from starlette.types import Scope

from blaze_ai.logs import printable

T = TypeVar("T")

logger = logging.getLogger(__name__)

Phase = Literal["waiting", "streaming"]
"""When the client went away: before any byte of the answer, or while a stream was sent."""


class ClientDisconnectedError(Exception):
    """The client went away before its answer was ready (logged with status 499)."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``, unless the client disconnects first.

    Raises:
        ClientDisconnectedError: the client disconnected; ``work`` was cancelled, and the
            disconnect was logged.
        Exception: whatever ``work`` raised.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done() and not watcher.done():  # we were cancelled ourselves
            task.cancel()
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log_client_disconnect(request.scope, "waiting")
    raise ClientDisconnectedError


def log_client_disconnect(scope: Scope, phase: Phase) -> None:
    """Log the one ``client_disconnected`` event of the request of ``scope`` (info level) and
    add ``client_disconnected=True`` to its access line."""
    state = scope.get("state", {})
    fields = state.get("log", {})
    fields["client_disconnected"] = True
    started = state.get("started_at")
    model = fields.get("model")
    logger.info(
        "client_disconnected",
        extra={
            "request_id": state.get("request_id"),
            "model": printable(model) if isinstance(model, str) else None,
            "endpoint": printable(scope.get("path", "")),
            "phase": phase,
            "elapsed_s": None if started is None else round(time.perf_counter() - started, 3),
        },
    )


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
