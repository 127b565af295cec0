"""Micro-batching: concurrent requests share a batch, each caller gets its own result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from blaze_ai.engines.diffusion.micro_batch import MicroBatcher
from blaze_ai.errors import EngineUnavailableError
from tests.fakes import FakeClock


class Recorder:
    """A batch function that records its batches and answers each item doubled."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[int]) -> list[int]:
        self.gate.wait(timeout=10)
        self.batches.append(items)
        if any(item < 0 for item in items):
            raise ValueError("negative item")
        return [2 * item for item in items]


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


async def batcher(
    recorder: Recorder,
    executor: ThreadPoolExecutor,
    *,
    size: int = 4,
    wait_s: float = 0.0,
    clock: FakeClock | None = None,
) -> MicroBatcher[int, int]:
    made: MicroBatcher[int, int] = MicroBatcher(
        recorder, executor=executor, max_batch_size=size, max_wait_s=wait_s, name="t", clock=clock
    )
    await made.start()
    return made


@pytest.fixture
async def running(
    recorder: Recorder, executor: ThreadPoolExecutor
) -> AsyncIterator[MicroBatcher[int, int]]:
    made = await batcher(recorder, executor)
    yield made
    await made.stop()


async def test_concurrent_requests_form_one_full_batch(
    recorder: Recorder, executor: ThreadPoolExecutor
) -> None:
    made = await batcher(recorder, executor, wait_s=60.0)
    try:  # a full batch runs at once, without waiting for max_wait_s
        results = await asyncio.gather(*(made.submit(i, key="k") for i in range(4)))
    finally:
        await made.stop()
    assert results == [0, 2, 4, 6]
    assert recorder.batches == [[0, 1, 2, 3]]


async def test_a_lone_request_runs_once_max_wait_is_over(
    running: MicroBatcher[int, int], recorder: Recorder
) -> None:
    assert await running.submit(5, key="k") == 10
    assert recorder.batches == [[5]]


async def test_requests_that_queued_behind_a_batch_do_not_wait_again(
    recorder: Recorder, executor: ThreadPoolExecutor
) -> None:
    clock = FakeClock()
    made = await batcher(recorder, executor, wait_s=60.0, clock=clock)
    recorder.gate.clear()
    try:
        busy = asyncio.create_task(made.submit(0, key="k", size=4))
        await asyncio.sleep(0.01)
        waiting = asyncio.create_task(made.submit(1, key="k"))
        await asyncio.sleep(0.01)
        clock.advance(61.0)  # the batch ran longer than max_wait_s
        recorder.gate.set()
        # the queued request starts at once instead of waiting 60 s more for company
        assert await asyncio.wait_for(asyncio.gather(busy, waiting), timeout=5) == [0, 2]
    finally:
        await made.stop()
    assert recorder.batches == [[0], [1]]


async def test_only_equal_keys_share_a_batch_and_order_is_kept(
    running: MicroBatcher[int, int], recorder: Recorder
) -> None:
    recorder.gate.clear()  # hold the worker so that everything below queues up
    first = asyncio.create_task(running.submit(0, key="a", size=4))
    await asyncio.sleep(0.01)
    rest = [
        asyncio.create_task(running.submit(i, key=k)) for i, k in [(1, "a"), (2, "b"), (3, "a")]
    ]
    await asyncio.sleep(0.01)
    recorder.gate.set()
    assert await asyncio.gather(first, *rest) == [0, 2, 4, 6]
    assert recorder.batches == [[0], [1, 3], [2]]


async def test_sizes_count_against_the_batch_bound(
    running: MicroBatcher[int, int], recorder: Recorder
) -> None:
    await asyncio.gather(*(running.submit(i, key="k", size=3) for i in range(3)))
    assert recorder.batches == [[0], [1], [2]]  # 3 + 3 > 4


async def test_a_cancelled_caller_is_skipped(
    running: MicroBatcher[int, int], recorder: Recorder
) -> None:
    recorder.gate.clear()
    busy = asyncio.create_task(running.submit(0, key="k", size=4))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(running.submit(1, key="k"))
    kept = asyncio.create_task(running.submit(2, key="k"))
    await asyncio.sleep(0.01)
    gone.cancel()
    recorder.gate.set()
    assert await asyncio.gather(busy, kept) == [0, 4]
    assert recorder.batches == [[0], [2]]


async def test_a_failed_batch_fails_each_of_its_callers(
    running: MicroBatcher[int, int], recorder: Recorder
) -> None:
    results = await asyncio.gather(
        running.submit(-1, key="k"), running.submit(1, key="k"), return_exceptions=True
    )
    assert all(isinstance(r, ValueError) for r in results)
    assert await running.submit(3, key="k") == 6  # the batcher goes on


async def test_stop_fails_queued_requests_and_refuses_new_ones(
    recorder: Recorder, executor: ThreadPoolExecutor
) -> None:
    made = await batcher(recorder, executor)
    recorder.gate.clear()
    busy = asyncio.create_task(made.submit(0, key="k", size=4))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(made.submit(1, key="k"))
    await asyncio.sleep(0.01)
    assert (made.running, made.queued) == (1, 1)
    await made.stop()
    recorder.gate.set()
    for task in (busy, queued):
        with pytest.raises(EngineUnavailableError):
            await task
    with pytest.raises(EngineUnavailableError):
        await made.submit(2, key="k")
