"""Leak checks for teardown: no request in flight, nothing admitted, no asyncio task left behind.

As Ray Serve's ``test_pow_2_request_router`` asserts ``curr_num_routing_tasks == 0`` after each
test: a request that finished must leave no trace in the gateway, and a test must not leave
tasks running. Work that is finishing as the test ends (the engine thread publishing its last
figures, a task that was just cancelled) gets ``SETTLE_S`` seconds before it counts as a leak.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from blaze_ai.gateway import Gateway

SETTLE_S = 2.0
"""Seconds a teardown waits for in-flight work to finish before it reports a leak."""


def leaks(gateways: Iterable[Gateway], tasks_before: set[asyncio.Task[Any]]) -> list[str]:
    """What is still running: deployments with requests in flight, admitted requests, and
    tasks (other than the current one) created since ``tasks_before`` and not done."""
    found = []
    for gateway in gateways:
        found += [
            f"{d.name}: {d.in_flight} in flight"
            for group in gateway.models
            for d in group.deployments
            if d.in_flight != 0
        ]
        if gateway.admission.pending != 0:
            found.append(f"admission: {gateway.admission.pending} pending")
    current = asyncio.current_task()
    found += [
        f"task leaked: {task!r}"
        for task in asyncio.all_tasks()
        if task not in tasks_before and task is not current and not task.done()
    ]
    return found


async def assert_no_leaks(
    gateways: Iterable[Gateway], tasks_before: set[asyncio.Task[Any]], settle_s: float = SETTLE_S
) -> None:
    """Assert that ``leaks()`` is empty, waiting up to ``settle_s`` seconds for it to be."""
    gateways = list(gateways)
    deadline = time.monotonic() + settle_s
    while (found := leaks(gateways, tasks_before)) and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert not found, found


@asynccontextmanager
async def no_leaks(*gateways: Gateway) -> AsyncIterator[None]:
    """Check on exit that the block left nothing running (see ``assert_no_leaks``)."""
    before = set(asyncio.all_tasks())
    yield
    await assert_no_leaks(gateways, before)
