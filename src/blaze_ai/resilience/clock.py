"""Injectable clocks (monotonic for deadlines, breakers and back-off; wall-clock for cache expiry),
so that time-based logic is tested without sleeping (``tests/fakes.py`` has a ``FakeClock``)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of monotonic time in seconds."""

    def now(self) -> float:
        """Seconds since an arbitrary fixed point; never goes backwards."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`."""

    def now(self) -> float:
        """Seconds from :func:`time.monotonic`."""
        return time.monotonic()


class WallClock:
    """Wall-clock time, :func:`time.time`: what cache entry expiry is measured in, so it means the
    same in every process."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()
