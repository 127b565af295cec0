"""Micro-batching: run concurrent requests for one model together, each caller getting its own
results.

The algorithm is Ray Serve's ``@serve.batch`` (``serve/batching.py``): a queue, an event that
signals arrivals, and a timeout. A background task waits for the first request, then for up to
``max_wait_s`` after that request arrived for more while the batch has room
(``max_batch_size``, counted in each request's ``size``, e.g. its images), then runs the batch
on the engine's worker thread and hands each caller its result. Requests arriving while a batch
runs queue up and form the next batch; having waited already, they do not wait again. Only
requests with equal ``key`` (e.g. the same image size and step count) share a batch; the
others keep their place in the queue. A request whose caller went away (cancelled) before its
batch started is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from blaze_ai.errors import EngineUnavailableError
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class _Pending(Generic[T, R]):
    item: T
    key: Hashable
    size: int
    future: asyncio.Future[R]
    arrived_at: float  # seconds on the batcher's clock


class MicroBatcher(Generic[T, R]):
    """Queue requests and run them in batches on ``executor``.

    Args:
        run_batch: blocking ``items -> results`` (one result per item, in order), run on
            ``executor``; an exception it raises is raised to every caller of the batch.
        executor: where ``run_batch`` runs (the engine's single worker thread).
        max_batch_size: most total ``size`` in one batch (a larger single request runs alone).
        max_wait_s: how long the first request waits for company, in seconds.
        name: used in logs.
        clock: monotonic time source for arrival times (a fake one in tests).
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Sequence[R]],
        *,
        executor: Executor,
        max_batch_size: int,
        max_wait_s: float,
        name: str = "",
        clock: Clock | None = None,
    ) -> None:
        self._run_batch = run_batch
        self._executor = executor
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._name = name
        self._clock = clock or MonotonicClock()
        self._queue: deque[_Pending[T, R]] = deque()
        self._arrived = asyncio.Event()
        self._running: list[_Pending[T, R]] = []
        self.peak_size = 0  # most total size of one batch since start
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (callers gone included until skipped)."""
        return len(self._queue)

    @property
    def running(self) -> int:
        """Requests in the batch running now."""
        return len(self._running)

    @property
    def running_size(self) -> int:
        """Total size (images) of the batch running now."""
        return sum(p.size for p in self._running)

    async def start(self) -> None:
        """Start the background task that forms and runs batches."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"batcher-{self._name}")

    async def stop(self) -> None:
        """Cancel the background task; queued and running requests fail with 503."""
        unfinished = [*self._running, *self._queue]
        self._queue.clear()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        error = EngineUnavailableError(f"engine {self._name} stopped")
        for pending in unfinished:
            _settle(pending.future, error=error)

    async def submit(self, item: T, *, key: Hashable, size: int = 1) -> R:
        """Queue ``item`` and wait for its result (cancelling the wait drops the item).

        Raises:
            EngineUnavailableError: the batcher is not running.
            Exception: whatever ``run_batch`` raised for the batch.
        """
        if self._task is None:
            raise EngineUnavailableError(f"engine {self._name} is not running")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(item, key, size, future, self._clock.now()))
        self._arrived.set()
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self._running = batch
            self.peak_size = max(self.peak_size, self.running_size)
            try:
                results = await loop.run_in_executor(
                    self._executor, self._run_batch, [p.item for p in batch]
                )
            except Exception as exc:  # the batch failed: each of its callers gets the error
                for pending in batch:
                    _settle(pending.future, error=exc)
            else:
                for pending, result in zip(batch, results, strict=True):
                    _settle(pending.future, result=result)
            finally:
                self._running = []

    async def _next_batch(self) -> list[_Pending[T, R]]:
        """Wait for a request, then until ``max_wait_s`` after its arrival for more with its
        key; take them."""
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        first = self._queue[0]
        key = first.key
        until = first.arrived_at + self._max_wait_s
        while self._size_with(key) < self._max_batch_size:
            remaining = until - self._clock.now()
            if remaining <= 0:
                break
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                break
        return self._take(key)

    def _size_with(self, key: Hashable) -> int:
        return sum(p.size for p in self._queue if p.key == key and not p.future.done())

    def _take(self, key: Hashable) -> list[_Pending[T, R]]:
        """Remove and return the queued requests with ``key`` that fit, oldest first."""
        taken: list[_Pending[T, R]] = []
        rest: deque[_Pending[T, R]] = deque()
        total = 0
        for pending in self._queue:
            if pending.future.done():
                continue  # the caller went away
            if pending.key == key and (not taken or total + pending.size <= self._max_batch_size):
                taken.append(pending)
                total += pending.size
            else:
                rest.append(pending)
        self._queue = rest
        return taken


def _settle(
    future: asyncio.Future[Any], *, result: Any = None, error: Exception | None = None
) -> None:
    if future.done():
        return  # the caller went away while its batch ran
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
