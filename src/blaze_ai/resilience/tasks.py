"""Background tasks: cancel and wait until they have finished, in ``stop()`` methods."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: asyncio.Task[Any] | Iterable[asyncio.Task[Any]] | None) -> None:
    """Cancel ``tasks`` (one task, several, or None) and wait until each has finished.

    A task that ends cancelled is fine; the first other exception a task ended with is raised
    once all have finished. A cancellation of the caller while it waits propagates.
    """
    if tasks is None:
        return
    pending = [tasks] if isinstance(tasks, asyncio.Task) else list(tasks)
    if not pending:
        return
    for task in pending:
        task.cancel()
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
