"""A per-deployment circuit breaker: closed -> open -> half_open -> closed.

- **closed**: requests flow. It opens after ``failure_threshold`` consecutive failures, or when
  the failure rate over the last ``window_s`` seconds exceeds ``error_rate_threshold`` (with at
  least ``min_requests`` outcomes in the window).
- **open**: requests are rejected for ``cooldown_s`` seconds.
- **half_open**: at most ``half_open_max_requests`` probe requests are let through at once;
  ``success_threshold`` successes in a row close the breaker, any failure re-opens it.

Only failures of the deployment count (timeouts, connection errors, 5xx). A client error is
recorded with :meth:`CircuitBreaker.record_ignored`: it releases a probe slot and counts neither
way. The state machine follows Martin Fowler's "CircuitBreaker" and Envoy's outlier detection
(consecutive 5xx, failure percentage); time comes from an injected clock.
"""

from __future__ import annotations

from collections import Counter, deque
from enum import StrEnum

from blaze_ai.config.schema import BreakerConfig
from blaze_ai.resilience.clock import Clock, MonotonicClock


class BreakerState(StrEnum):
    """The three states of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """The breaker of one deployment.

    Args:
        config: thresholds (the model's ``breaker`` settings; defaults when None).
        clock: monotonic time source (a fake one in tests).
    """

    def __init__(self, config: BreakerConfig | None = None, clock: Clock | None = None) -> None:
        self.config = config or BreakerConfig()
        self._clock = clock or MonotonicClock()
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._consecutive_failures = 0
        self._half_open_successes = 0
        self._probes_in_flight = 0
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed)
        self.times_opened = 0
        self.transitions: Counter[BreakerState] = Counter()
        """Transitions since start, by the state entered."""

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cooldown has passed reads as half_open."""
        if self._state is BreakerState.OPEN and self._cooldown_left() <= 0:
            self._to_half_open()
        return self._state

    def retry_after_s(self) -> float:
        """Seconds until an open breaker lets a probe through (0 when not open)."""
        return self._cooldown_left() if self.state is BreakerState.OPEN else 0.0

    def allows(self) -> bool:
        """True when a request could be admitted now (without reserving anything)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            return self._probes_in_flight < self.config.half_open_max_requests
        return False

    def acquire(self) -> bool:
        """Admit one request: True, and in half_open a probe slot is taken; else False.

        Every True must be followed by exactly one ``record_*`` call.
        """
        if not self.allows():
            return False
        if self._state is BreakerState.HALF_OPEN:
            self._probes_in_flight += 1
        return True

    def record_success(self) -> None:
        """The admitted request succeeded."""
        self._remember(failed=False)
        self._consecutive_failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._release_probe()
            self._half_open_successes += 1
            if self._half_open_successes >= self.config.success_threshold:
                self._to_closed()

    def record_failure(self) -> None:
        """The admitted request failed because of the deployment."""
        self._remember(failed=True)
        self._consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._release_probe()
            self._to_open()
        elif self._state is BreakerState.CLOSED and self._should_open():
            self._to_open()

    def record_ignored(self) -> None:
        """The admitted request ended without a verdict (client error, cancelled)."""
        if self._state is BreakerState.HALF_OPEN:
            self._release_probe()

    def error_rate(self) -> float:
        """Failures / outcomes in the last ``window_s`` seconds (0.0 when there are none)."""
        self._trim()
        if not self._outcomes:
            return 0.0
        return sum(1 for _, failed in self._outcomes if failed) / len(self._outcomes)

    def _should_open(self) -> bool:
        if self._consecutive_failures >= self.config.failure_threshold:
            return True
        threshold = self.config.error_rate_threshold
        if threshold is None or len(self._outcomes) < self.config.min_requests:
            return False
        return self.error_rate() > threshold

    def _remember(self, *, failed: bool) -> None:
        self._outcomes.append((self._clock.now(), failed))
        self._trim()

    def _trim(self) -> None:
        horizon = self._clock.now() - self.config.window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _cooldown_left(self) -> float:
        return self._opened_at + self.config.cooldown_s - self._clock.now()

    def _release_probe(self) -> None:
        self._probes_in_flight = max(0, self._probes_in_flight - 1)

    def _to_open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock.now()
        self._half_open_successes = 0
        self.times_opened += 1
        self.transitions[BreakerState.OPEN] += 1

    def _to_half_open(self) -> None:
        self._state = BreakerState.HALF_OPEN
        self.transitions[BreakerState.HALF_OPEN] += 1
        self._half_open_successes = 0
        self._probes_in_flight = 0

    def _to_closed(self) -> None:
        self._state = BreakerState.CLOSED
        self.transitions[BreakerState.CLOSED] += 1
        self._consecutive_failures = 0
        self._outcomes.clear()
