"""Scripted engines for gateway and API tests (real engines are tested on a tiny real model)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from blaze_ai.engines.base import EngineLoad, EngineState
from blaze_ai.errors import BlazeError, EngineDeadError
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import (
    Choice,
    FinishReason,
    ImageRequest,
    ImageResult,
    StreamItem,
    TextChunk,
    TextRequest,
    TextResult,
    Usage,
)


@dataclass
class ScriptedEngine:
    """An engine that answers its own name, optionally after waiting for ``gate``."""

    name: str
    state: EngineState = EngineState.READY
    in_flight: int = 0
    gate: asyncio.Event | None = None
    context_window: int = 100
    calls: list[str] = field(default_factory=list)
    fail_after_chunks: BlazeError | Exception | None = None
    start_failures: int = 0
    starts: int = 0

    async def start(self) -> None:
        self.starts += 1
        if self.start_failures > 0:
            self.start_failures -= 1
            self.state = EngineState.FAILED
            raise EngineDeadError(f"{self.name} could not load")
        self.state = EngineState.READY

    async def stop(self) -> None:
        self.state = EngineState.STOPPED

    async def check_health(self) -> None:
        return None

    def load(self) -> EngineLoad:
        return EngineLoad(self.in_flight, 0)

    async def generate(self, req: TextRequest, deadline: Deadline) -> TextResult:
        self.calls.append(req.request_id)
        self.in_flight += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            return TextResult((Choice(0, self.name, FinishReason.STOP),), Usage(1, 1))
        finally:
            self.in_flight -= 1

    async def stream(self, req: TextRequest, deadline: Deadline) -> AsyncIterator[StreamItem]:
        if self.fail_after_chunks is not None:
            yield TextChunk(0, "partial")
            raise self.fail_after_chunks
        yield TextChunk(0, self.name, FinishReason.STOP)
        yield Usage(1, 1)


@dataclass
class ScriptedImageEngine:
    """An image engine that answers one PNG-like byte string per image: its name."""

    name: str
    state: EngineState = EngineState.READY
    calls: list[ImageRequest] = field(default_factory=list)

    async def start(self) -> None:
        self.state = EngineState.READY

    async def stop(self) -> None:
        self.state = EngineState.STOPPED

    async def check_health(self) -> None:
        return None

    def load(self) -> EngineLoad:
        return EngineLoad(0, 0)

    async def generate_images(self, req: ImageRequest, deadline: Deadline) -> ImageResult:
        self.calls.append(req)
        return ImageResult((self.name.encode(),) * req.n, req.width or 8, req.height or 8)


class FakeClock:
    """A clock that moves only when told to (for tests).

    Args:
        start_s: the initial reading, in seconds.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = start_s

    def now(self) -> float:
        """The current fake time, in seconds."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0)."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._now += seconds


class FakeTimer:
    """A :class:`FakeClock` and a ``sleep`` that returns only when the clock is advanced past its
    wake-up time: inject both (``build_gateway(..., clock=t.clock, sleep=t.sleep)``) and drive
    health checks, the supervisor and retry back-offs without real waiting.
    """

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.requested: list[float] = []  # every delay asked for, in seconds
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    @property
    def sleeping(self) -> int:
        """How many callers are asleep now."""
        return len(self._sleepers)

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` of fake time."""
        self.requested.append(seconds)
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.clock.now() + seconds, future))
        try:
            await future
        finally:
            self._sleepers = [s for s in self._sleepers if s[1] is not future]

    async def until_sleeping(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait (real time, at most ``timeout_s``) until ``count`` callers are asleep."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while self.sleeping < count:
            if loop.time() > give_up:
                raise TimeoutError(f"{self.sleeping} sleepers, expected {count}")
            await asyncio.sleep(0.001)

    async def advance(self, seconds: float, *, then_sleeping: int | None = None) -> None:
        """Move time forward, wake the sleepers now due, and wait until ``then_sleeping``
        callers are asleep (default: as many as before, for loops that sleep again once their
        work is done)."""
        before = self.sleeping if then_sleeping is None else then_sleeping
        self.clock.advance(seconds)
        for wake_at, future in list(self._sleepers):
            if wake_at <= self.clock.now() and not future.done():
                future.set_result(None)
        await asyncio.sleep(0)
        await self.until_sleeping(before)
