"""Outage tracking of a backing store (a cache level's disk or Redis, the rate limits' Redis):
skip it while it fails, and log an outage once."""

from __future__ import annotations

import logging

from blaze_ai.resilience.clock import Clock

logger = logging.getLogger(__name__)


class OutageTracker:
    """Counts failures of a backing store, logs once per outage, and paces retries.

    After a failure the store is skipped for ``retry_interval_s``; then one call (not every
    waiting one) probes it again. A success ends the outage. Like a circuit breaker with a
    one-call half-open state (Nygard, *Release It!*, "Circuit Breaker").

    Args:
        name: the store's name in logs (``redis``, ``disk``).
        retry_interval_s: seconds to skip the store after a failure.
        clock: monotonic time source.
        events: the log events of an outage's start (warning) and end (info).
        name_field: the log field that holds ``name``.
    """

    def __init__(
        self,
        name: str,
        retry_interval_s: float,
        clock: Clock,
        *,
        events: tuple[str, str] = ("cache_level_down", "cache_level_up"),
        name_field: str = "level",
    ) -> None:
        self.name = name
        self._events = events
        self._name_field = name_field
        self.errors = 0
        self.outages = 0
        self._retry_interval_s = retry_interval_s
        self._clock = clock
        self._down_since: float | None = None
        self._retry_at = 0.0

    @property
    def up(self) -> bool:
        """False during an outage."""
        return self._down_since is None

    def allow(self) -> bool:
        """True if a call may be made now; during an outage, True once per retry interval."""
        if self._down_since is None:
            return True
        now = self._clock.now()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._retry_interval_s  # this caller probes; the others skip
        return True

    def failure(self, error: BaseException) -> None:
        """Record a failed call; the first failure of an outage is logged."""
        self.errors += 1
        now = self._clock.now()
        self._retry_at = now + self._retry_interval_s
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            logger.warning(
                self._events[0],
                extra={
                    self._name_field: self.name,
                    "error": type(error).__name__,
                    "detail": str(error),
                },
            )

    def success(self) -> None:
        """Record a working call; ends an outage (logged once)."""
        if self._down_since is not None:
            down_s = round(self._clock.now() - self._down_since, 3)
            self._down_since = None
            logger.info(self._events[1], extra={self._name_field: self.name, "down_s": down_s})
