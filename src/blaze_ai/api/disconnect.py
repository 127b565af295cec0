"""Stop work that nobody will read: cancel a non-streamed request when its client goes away.

Streams are cancelled by Starlette when the client disconnects (the generator is closed); a
plain request would otherwise run to its end. :func:`cancel_on_disconnect` runs the work next to
a watcher of the ASGI ``http.disconnect`` message and cancels the work when it comes first, so
the engine frees the request's place at its next step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientDisconnectedError(Exception):
    """The client went away before its answer was ready (logged with status 499)."""


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """The result of ``work``, unless the client disconnects first.

    Raises:
        ClientDisconnectedError: the client disconnected; ``work`` was cancelled.
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
    raise ClientDisconnectedError


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
