"""An ASGI wrapper whose lifespan starts the wrapped app once and keeps it up until ``close()``.

Schemathesis' pytest plugin ends an ASGI app's lifespan after each test and starts it again for
the next one; Blaze's lifespan starts every engine (seconds, and ``/ready`` is 503 meanwhile).
Wrapped, the app starts on the first ``lifespan.startup`` (which completes once the app is
ready), later startups and shutdowns are answered at once, and ``close()`` stops it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

READY_POLL_S = 0.02


class LifespanOnce:
    """``app`` with a lifespan entered once (see module doc).

    Args:
        app: the FastAPI app; its ``router.lifespan_context`` is entered in the event loop
            of the first ``lifespan.startup``.
        ready: True once the started app can serve (polled before startup completes).
        ready_timeout_s: how long startup may wait for ``ready``.
    """

    def __init__(
        self, app: FastAPI, ready: Callable[[], bool], *, ready_timeout_s: float = 120.0
    ) -> None:
        self.app = app
        self._ready = ready
        self._ready_timeout_s = ready_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        started = asyncio.Event()
        self._task = asyncio.create_task(self._serve(started, self._stop))
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({waiting, self._task}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if self._task.done():
            self._task.result()  # the app failed to start or to get ready: raise it here

    async def _serve(self, started: asyncio.Event, stop: asyncio.Event) -> None:
        async with self.app.router.lifespan_context(self.app):
            deadline = time.monotonic() + self._ready_timeout_s
            while not self._ready():
                assert time.monotonic() < deadline, "the app did not get ready"
                await asyncio.sleep(READY_POLL_S)
            started.set()
            await stop.wait()

    def close(self) -> None:
        """Leave the app's lifespan (from any thread but the app's loop); a no-op if it never
        started."""
        if self._task is None or self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=60)

    async def _close(self) -> None:
        assert self._stop is not None and self._task is not None
        self._stop.set()
        await self._task
