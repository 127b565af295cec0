"""cancel_and_wait: the one cancel-and-await helper of every ``stop()``."""

from __future__ import annotations

import asyncio

import pytest

from blaze_ai.resilience.tasks import cancel_and_wait


async def test_cancels_and_waits_for_every_task() -> None:
    tasks = [asyncio.create_task(asyncio.sleep(60)) for _ in range(3)]
    await cancel_and_wait(tasks)
    assert all(t.cancelled() for t in tasks)
    await cancel_and_wait(None)
    await cancel_and_wait([])


async def test_a_task_that_failed_raises_its_error() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(broken())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)


async def test_the_callers_own_cancellation_propagates() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(60)  # ignores the first cancel for a while

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
