"""One overall deadline per request, shared by every attempt, retry and engine step."""

from __future__ import annotations

from dataclasses import dataclass

from blaze_ai.resilience.clock import Clock, MonotonicClock

_DEFAULT_CLOCK = MonotonicClock()


@dataclass(frozen=True, slots=True)
class Deadline:
    """An absolute point in time (seconds on ``clock``) by which a request must be answered."""

    expires_at: float
    clock: Clock = _DEFAULT_CLOCK

    @classmethod
    def after(cls, timeout_s: float, clock: Clock = _DEFAULT_CLOCK) -> Deadline:
        """A deadline ``timeout_s`` seconds from now."""
        return cls(clock.now() + timeout_s, clock)

    def remaining_s(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self.expires_at - self.clock.now())

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.clock.now() >= self.expires_at
