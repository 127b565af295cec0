"""No ``asyncio.wait_for`` in Blaze: on Python 3.11 it can swallow a cancellation.

CI failure of ``tests/api/test_client_disconnect.py`` (1 run in 3): a client hung up, the
handler cancelled the request's task, but the LLM engine's ``asyncio.wait_for(job.events.get(),
...)`` had its inner ``get`` finish in the same loop step, returned the item and dropped the
cancel (CPython's 3.11 ``wait_for``: ``except CancelledError: if fut.done(): return
fut.result()``; rewritten on ``asyncio.timeout`` in 3.12, gh-86296). The request then ran to
its end and the router counted a success, not a client disconnect. ``async with
asyncio.timeout(...)`` keeps the cancel.
"""

from __future__ import annotations

import ast
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "blaze_ai"


def _wait_for_calls() -> list[str]:
    found: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "wait_for"
                and isinstance(node.value, ast.Name)
                and node.value.id == "asyncio"
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_the_source_uses_asyncio_timeout_not_wait_for() -> None:
    assert _wait_for_calls() == []


async def _get_with_wait_for(queue: asyncio.Queue[int]) -> int:
    return await asyncio.wait_for(queue.get(), timeout=60)


async def _get_with_timeout(queue: asyncio.Queue[int]) -> int:
    async with asyncio.timeout(60):
        return await queue.get()


async def _cancelled_as_the_item_arrives(
    get: Callable[[asyncio.Queue[int]], Awaitable[int]], steps: int
) -> bool:
    """Put an item, let the loop run ``steps`` times, cancel the reader: did a cancel that the
    reader accepted (it had not finished yet) end it?"""
    queue: asyncio.Queue[int] = asyncio.Queue()
    reader = asyncio.ensure_future(get(queue))
    await asyncio.sleep(0)  # the reader waits on the queue
    queue.put_nowait(1)
    for _ in range(steps):
        await asyncio.sleep(0)
    if not reader.cancel():
        return True  # it had finished: no race
    try:
        await reader
    except asyncio.CancelledError:
        return True
    return False


async def test_asyncio_timeout_keeps_a_cancel_that_meets_the_item() -> None:
    for steps in range(4):
        assert await _cancelled_as_the_item_arrives(_get_with_timeout, steps), steps


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for is fixed in 3.12")
async def test_wait_for_drops_that_cancel_on_python_3_11() -> None:
    """Why the rule holds: the race, shown on the interpreter Blaze runs on."""
    dropped = [
        steps
        for steps in range(4)
        if not await _cancelled_as_the_item_arrives(_get_with_wait_for, steps)
    ]
    assert dropped
