"""Active health checks, in Envoy's terms.

Every ``interval_s`` each deployment whose engine says it is ready is probed with
``engine.check_health()`` under ``timeout_s``. ``unhealthy_threshold`` consecutive failures mark
it unhealthy (no traffic); ``healthy_threshold`` consecutive successes bring it back. Probes run
on the event loop and never queue behind generation work (a local engine answers from its state;
a remote one asks its upstream on a pooled connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from blaze_ai.config.schema import HealthCheckConfig
from blaze_ai.errors import BlazeError
from blaze_ai.gateway.deployment import ROUTABLE_STATES, Deployment
from blaze_ai.resilience.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Streak:
    successes: int = 0
    failures: int = 0


class HealthChecker:
    """Probes deployments in the background and marks their health (``mark_health``).

    Args:
        targets: each deployment with its model's ``health_check`` settings.
        sleep: awaitable sleep (injected by tests).
    """

    def __init__(
        self,
        targets: Sequence[tuple[Deployment, HealthCheckConfig]],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._targets = list(targets)
        self._sleep = sleep
        self._streaks = {d.name: _Streak() for d, _ in self._targets}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start one probing task per deployment."""
        self._tasks = [asyncio.create_task(self._loop(d, p)) for d, p in self._targets]

    async def stop(self) -> None:
        """Cancel the probing tasks and wait for them."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    async def probe(self, deployment: Deployment, policy: HealthCheckConfig) -> None:
        """Probe once and apply the thresholds."""
        if deployment.engine.state not in ROUTABLE_STATES:
            return  # loading, failed or stopped: the engine state already keeps traffic away
        streak = self._streaks[deployment.name]
        try:
            async with asyncio.timeout(policy.timeout_s):
                await deployment.engine.check_health()
        except (BlazeError, TimeoutError) as exc:
            streak.failures += 1
            streak.successes = 0
            if deployment.healthy and streak.failures >= policy.unhealthy_threshold:
                deployment.mark_health(False)
                logger.warning(
                    "deployment_unhealthy", extra={"deployment": deployment.name, "error": str(exc)}
                )
            return
        streak.successes += 1
        streak.failures = 0
        if not deployment.healthy and streak.successes >= policy.healthy_threshold:
            deployment.mark_health(True)
            logger.info("deployment_healthy", extra={"deployment": deployment.name})

    async def _loop(self, deployment: Deployment, policy: HealthCheckConfig) -> None:
        while True:
            await self._sleep(policy.interval_s)
            await self.probe(deployment, policy)
