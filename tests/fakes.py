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
