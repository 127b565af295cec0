"""Auto-recovery: restart engines that failed, with exponential back-off.

An engine that could not load, or died (state ``failed``), is stopped and started again after
``base_s``, then twice as long after each further failure, up to ``max_s``. The back-off resets
once a restart succeeds. Restart counts are kept on the deployment (``/admin/deployments``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from blaze_ai.engines.base import EngineState
from blaze_ai.errors import BlazeError
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class Supervisor:
    """Watches deployments and restarts failed engines.

    Args:
        deployments: what to watch.
        base_s, max_s: first and largest back-off, in seconds.
        poll_s: how often engine states are read, in seconds.
        clock, sleep: time source and awaitable sleep (injected by tests).
    """

    def __init__(
        self,
        deployments: Sequence[Deployment],
        *,
        base_s: float = 1.0,
        max_s: float = 60.0,
        poll_s: float = 0.5,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._deployments = list(deployments)
        self._base_s = base_s
        self._max_s = max_s
        self._poll_s = poll_s
        self._clock = clock or MonotonicClock()
        self._sleep = sleep
        self._next_try: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start watching in the background."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop watching (a restart in progress is cancelled)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def check_once(self) -> None:
        """Restart every failed engine whose back-off has passed."""
        now = self._clock.now()
        for deployment in self._deployments:
            if deployment.engine.state is not EngineState.FAILED:
                continue
            name = deployment.name
            if name not in self._next_try:
                self._backoff[name] = self._base_s
                self._next_try[name] = now + self._base_s
            elif now >= self._next_try[name]:
                await self._restart(deployment)

    async def _restart(self, deployment: Deployment) -> None:
        name = deployment.name
        restarts = deployment.count_restart()
        logger.info("engine_restarting", extra={"deployment": name, "restarts": restarts})
        try:
            await deployment.engine.stop()
            await deployment.engine.start()
        except BlazeError as exc:
            self._backoff[name] = min(self._max_s, self._backoff[name] * 2)
            self._next_try[name] = self._clock.now() + self._backoff[name]
            logger.error(
                "engine_restart_failed",
                extra={"deployment": name, "error": exc.message, "retry_in_s": self._backoff[name]},
            )
            return
        self._next_try.pop(name, None)
        self._backoff.pop(name, None)
        logger.info("engine_restarted", extra={"deployment": name})

    async def _loop(self) -> None:
        while True:
            await self._sleep(self._poll_s)
            await self.check_once()
