"""A deployment: one engine serving a model, with its routing state (breaker, counters, health).

Every change of that state goes through a method of :class:`Deployment`: the router opens an
:meth:`~Deployment.attempt` and gives it a verdict, the health checker calls
:meth:`~Deployment.mark_health`, the supervisor :meth:`~Deployment.count_restart`. Balancers and
the admin snapshot only read.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from blaze_ai.engines.base import AnyEngine, EngineState
from blaze_ai.errors import (
    BlazeError,
    CapacityError,
    ClientError,
    EngineGenerationError,
    UpstreamRateLimitError,
)
from blaze_ai.observability.request import RequestRecord
from blaze_ai.observability.spans import NO_SPAN
from blaze_ai.resilience.breaker import CircuitBreaker
from blaze_ai.resilience.clock import Clock, MonotonicClock

if TYPE_CHECKING:
    from blaze_ai.observability.tracing import AttemptTrace

logger = logging.getLogger(__name__)

ROUTABLE_STATES = frozenset({EngineState.READY, EngineState.DEGRADED})
EWMA_ALPHA = 0.3
"""Weight of the newest latency sample in the moving average."""


@dataclass(slots=True)
class DeploymentCounters:
    """Counters of one deployment, changed only by :class:`Deployment`'s methods.

    Attributes:
        in_flight: attempts running now.
        requests: attempts finished (any outcome).
        successes: attempts that answered.
        failures: attempts that failed because of the deployment.
        rejected: attempts that failed because of the request (a client error) or of a full
            queue: counted neither way on the breaker.
        client_disconnects: attempts cancelled because their request was: its client hung up
            (or the server stopped mid-request). Counted neither way on the breaker.
        ewma_latency_s: exponentially weighted moving average of successful attempts'
            latency (time to first token for streams), seconds; None before the first sample.
        last_error: the latest failure, as ``Type: message``.
    """

    in_flight: int = 0
    requests: int = 0
    successes: int = 0
    failures: int = 0
    rejected: int = 0
    client_disconnects: int = 0
    ewma_latency_s: float | None = None
    last_error: str | None = None


class Attempt:
    """One attempt on one deployment, opened by :meth:`Deployment.attempt`: a context manager
    that counts it in flight from ``__enter__`` to ``__exit__`` (a plain class, not a
    ``@contextmanager`` generator: it is on every request's path).

    Give it one verdict: :meth:`succeed`, :meth:`fail`, or :meth:`cancel` when its request was
    cancelled (the client hung up). An attempt that ends without one counts neither way on the
    breaker.

    On a traced request it is also a pair of spans (``attempt`` and its ``engine`` call), from
    ``__enter__`` to ``__exit__``, given the same verdict; :meth:`outgoing` scopes the
    ``traceparent`` the engine sends upstream.
    """

    __slots__ = ("_done", "_number", "_record", "_started", "_trace", "deployment")

    def __init__(
        self, deployment: Deployment, record: RequestRecord | None = None, number: int = 0
    ) -> None:
        self.deployment = deployment
        self._record = record
        self._number = number
        self._started = time.perf_counter()
        self._done = False
        self._trace: AttemptTrace | None = None

    def __enter__(self) -> Attempt:
        deployment = self.deployment
        deployment.counters.in_flight += 1
        record = self._record
        if record is not None:
            record.engine_started(self._started)
            if record.trace is not None:
                number = self._number + 1
                self._trace = record.trace.attempt(deployment.name, deployment.kind, number)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.deployment.counters.in_flight -= 1
        if self._record is not None:
            self._record.engine_ended(time.perf_counter())
        self.close()
        if self._trace is not None:
            self._trace.end()

    def outgoing(self) -> AbstractContextManager[object]:
        """Within its ``with`` block (around one ``await`` of the engine), the engine's requests
        upstream carry the attempt's trace context; nothing when the request is not traced."""
        return NO_SPAN if self._trace is None else self._trace.outgoing()

    def succeed(self) -> None:
        """The attempt answered; its latency (seconds since it opened) is recorded."""
        if not self._done:
            self._done = True
            self.deployment.record_success(time.perf_counter() - self._started)
            self._settle("success")

    def fail(self, exc: Exception) -> BlazeError:
        """Record ``exc``; return it as a BlazeError (an unexpected exception is wrapped)."""
        error = exc if isinstance(exc, BlazeError) else _wrap(exc)
        if not self._done:
            self._done = True
            self.deployment.record_failure(error)
            self._settle("error", error)
        return error

    def cancel(self) -> None:
        """The request was cancelled (its client went away): counted as a client disconnect,
        neither way on the breaker."""
        if not self._done:
            self._done = True
            self.deployment.record_client_disconnect()
            self._settle("cancelled")

    def close(self) -> None:
        """End the attempt; without a verdict it is recorded as ignored."""
        if not self._done:
            self._done = True
            self.deployment.record_ignored()
            self._settle("ignored")

    def _settle(self, outcome: str, error: BlazeError | None = None) -> None:
        """Give the verdict to the attempt's spans (when traced)."""
        if self._trace is not None:
            self._trace.settle(outcome, error)


def _wrap(exc: Exception) -> BlazeError:
    """An engine bug becomes a generic 500; its details go to the log, never to the client."""
    logger.error("engine_raised_unexpectedly", exc_info=exc)
    error = EngineGenerationError("internal engine error")
    error.__cause__ = exc
    return error


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
        kind: the engine's kind as configured (``llm``, ``diffusion``, ``remote``), for the
            admin snapshot and the dashboard.
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
        kind: str = "",
    ) -> None:
        self.name = name
        self.engine = engine
        self.kind = kind
        self.weight = weight
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.clock = clock or MonotonicClock()
        self.breaker = breaker or CircuitBreaker(clock=self.clock)
        self.counters = DeploymentCounters()
        self._healthy = True
        self._not_before = 0.0  # clock time before which an upstream asked us not to call again
        self._rate_limited = False  # whether that wait comes from an upstream rate limit
        self._restarts = 0
        self._latency_observer: Callable[[float], None] | None = None

    def __repr__(self) -> str:
        return f"Deployment({self.name!r})"

    @property
    def healthy(self) -> bool:
        """False once active health checks found the deployment unhealthy."""
        return self._healthy

    @property
    def restarts(self) -> int:
        """Times the supervisor restarted the engine."""
        return self._restarts

    @property
    def routable(self) -> bool:
        """True when the engine is up, healthy, not deferred, and its breaker admits requests."""
        return (
            self.engine.state in ROUTABLE_STATES
            and self._healthy
            and self.clock.now() >= self._not_before
            and self.breaker.allows()
        )

    @property
    def saturated(self) -> bool:
        """True when ``max_concurrency`` attempts are already in flight."""
        return self.max_concurrency is not None and self.counters.in_flight >= self.max_concurrency

    @property
    def in_flight(self) -> int:
        """Attempts in flight, plus the engine's own queue when it reports more."""
        return max(self.counters.in_flight, self.engine.load().in_flight)

    @property
    def rate_limited(self) -> bool:
        """True while the deployment waits out an upstream rate limit's ``Retry-After``."""
        return self._rate_limited and self.clock.now() < self._not_before

    def acquire(self) -> bool:
        """Ask the breaker to admit one attempt (in half_open this takes a probe slot)."""
        return self.breaker.acquire()

    def attempt(self, record: RequestRecord | None = None, number: int = 0) -> Attempt:
        """One attempt, to use as ``with deployment.attempt() as attempt:``; counted in flight
        until the ``with`` block ends, and as engine time on the request's ``record`` (and as
        spans on its trace; ``number`` counts the earlier tries on the model).

        Call only after :meth:`acquire` returned True; the attempt's verdict releases it.
        """
        return Attempt(self, record, number)

    def observe_latency(self, observer: Callable[[float], None] | None) -> None:
        """Also give every successful attempt's latency (seconds) to ``observer`` (the
        deployment's latency histogram); None stops it."""
        self._latency_observer = observer

    def record_success(self, latency_s: float) -> None:
        """An attempt answered after ``latency_s`` seconds: breaker, counters, moving average."""
        self.breaker.record_success()
        if self._latency_observer is not None:
            self._latency_observer(latency_s)
        counters = self.counters
        counters.requests += 1
        counters.successes += 1
        if counters.ewma_latency_s is None:
            counters.ewma_latency_s = latency_s
        else:
            counters.ewma_latency_s += EWMA_ALPHA * (latency_s - counters.ewma_latency_s)

    def record_failure(self, error: BlazeError) -> None:
        """An attempt failed with ``error``. A client error or a full queue elsewhere is the
        request's or the moment's fault, not the deployment's: it counts neither way."""
        self.counters.requests += 1
        if isinstance(error, ClientError | CapacityError):
            self.breaker.record_ignored()
            self.counters.rejected += 1
            return
        self.breaker.record_failure()
        self.counters.failures += 1
        self.counters.last_error = f"{type(error).__name__}: {error.message}"
        if error.retry_after_s:
            self.defer(error.retry_after_s, rate_limited=isinstance(error, UpstreamRateLimitError))
        logger.warning(
            "attempt_failed",
            extra={
                "deployment": self.name,
                "error_type": type(error).__name__,
                "error": error.message,
            },
        )

    def record_ignored(self) -> None:
        """An attempt ended with no verdict (cancelled, or closed early): counts neither way."""
        self.breaker.record_ignored()

    def record_client_disconnect(self) -> None:
        """An attempt was cancelled because its client went away: counted, and neither way on
        the breaker (the deployment did nothing wrong)."""
        self.breaker.record_ignored()
        self.counters.client_disconnects += 1

    def defer(self, seconds: float, *, rate_limited: bool = False) -> None:
        """Send no traffic for ``seconds`` (an upstream's ``Retry-After``)."""
        self._not_before = self.clock.now() + seconds
        self._rate_limited = rate_limited

    def mark_health(self, ok: bool) -> bool:
        """Set the health-check verdict; True when it changed."""
        changed = ok != self._healthy
        self._healthy = ok
        return changed

    def count_restart(self) -> int:
        """Count one restart of the engine by the supervisor; the new total."""
        self._restarts += 1
        return self._restarts

    def seconds_until_available(self) -> float:
        """Seconds until a breaker cooldown or upstream Retry-After ends (0 if neither)."""
        deferred = max(0.0, self._not_before - self.clock.now())
        return max(deferred, self.breaker.retry_after_s())
