"""A deployment: one engine serving a model, with its routing state (breaker, stats, health)."""

from __future__ import annotations

from dataclasses import dataclass

from blaze_ai.engines.base import AnyEngine, EngineState
from blaze_ai.resilience.breaker import CircuitBreaker
from blaze_ai.resilience.clock import Clock, MonotonicClock

ROUTABLE_STATES = frozenset({EngineState.READY, EngineState.DEGRADED})
EWMA_ALPHA = 0.3
"""Weight of the newest latency sample in the moving average."""


@dataclass(slots=True)
class DeploymentStats:
    """Counters of one deployment, changed by the router in ``try/finally``.

    Attributes:
        in_flight: attempts running now.
        requests: attempts finished (any outcome).
        failures: attempts that failed because of the deployment.
        ewma_latency_s: exponentially weighted moving average of successful attempts'
            latency (time to first token for streams), seconds; None before the first sample.
        last_error: the latest failure, as ``Type: message``.
    """

    in_flight: int = 0
    requests: int = 0
    failures: int = 0
    ewma_latency_s: float | None = None
    last_error: str | None = None

    def observe_latency(self, latency_s: float) -> None:
        """Fold one latency sample (seconds) into the moving average."""
        if self.ewma_latency_s is None:
            self.ewma_latency_s = latency_s
        else:
            self.ewma_latency_s += EWMA_ALPHA * (latency_s - self.ewma_latency_s)


class Deployment:
    """One engine behind a served model.

    Args:
        name: ``<model>/<index>``, used in logs, metrics and /admin/deployments.
        engine: the engine.
        weight: share of traffic for weighted strategies.
        max_concurrency: most attempts in flight; None is unbounded.
        timeout_s: deadline of one attempt, seconds; None uses the request's.
        breaker: its circuit breaker (a default one if None).
        clock: monotonic time source.
    """

    def __init__(
        self,
        name: str,
        engine: AnyEngine,
        *,
        weight: float = 1.0,
        max_concurrency: int | None = None,
        timeout_s: float | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.weight = weight
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.clock = clock or MonotonicClock()
        self.breaker = breaker or CircuitBreaker(clock=self.clock)
        self.stats = DeploymentStats()
        self.healthy = True  # set by active health checks
        self.not_before = 0.0  # clock time before which an upstream asked us not to call again
        self.restarts = 0  # set by the supervisor

    def __repr__(self) -> str:
        return f"Deployment({self.name!r})"

    @property
    def routable(self) -> bool:
        """True when the engine is up, healthy, not deferred, and its breaker admits requests."""
        return (
            self.engine.state in ROUTABLE_STATES
            and self.healthy
            and self.clock.now() >= self.not_before
            and self.breaker.allows()
        )

    @property
    def saturated(self) -> bool:
        """True when ``max_concurrency`` attempts are already in flight."""
        return self.max_concurrency is not None and self.stats.in_flight >= self.max_concurrency

    @property
    def in_flight(self) -> int:
        """Attempts in flight, plus the engine's own queue when it reports more."""
        return max(self.stats.in_flight, self.engine.load().in_flight)

    def seconds_until_available(self) -> float:
        """Seconds until a breaker cooldown or upstream Retry-After ends (0 if neither)."""
        deferred = max(0.0, self.not_before - self.clock.now())
        return max(deferred, self.breaker.retry_after_s())
