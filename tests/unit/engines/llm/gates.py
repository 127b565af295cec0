"""Pacing a model's forward passes from a test."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class StepGate:
    """Makes every forward pass of a model wait for a permit (a forward pre-hook)."""

    def __init__(self, model: Any) -> None:
        self._permits = threading.Semaphore(0)
        self._arrived = threading.Event()
        self.open = False
        self._handle = model.register_forward_pre_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self._arrived.set()
        if not self.open:
            self._permits.acquire()

    async def wait_arrival(self) -> None:
        """Wait until a forward pass waits at the gate."""
        assert await asyncio.to_thread(self._arrived.wait, 10), "no forward pass arrived"

    async def step(self) -> None:
        """Let one forward pass through and wait until the next one arrives."""
        await self.wait_arrival()
        self._arrived.clear()
        self._permits.release()
        await self.wait_arrival()

    def release(self) -> None:
        """Open the gate for good."""
        self.open = True
        self._permits.release()
        self._handle.remove()
