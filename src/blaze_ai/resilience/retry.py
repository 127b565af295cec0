"""Retry back-off: exponential with full jitter.

``delay(attempt) = uniform(0, min(max_s, base_s * 2 ** attempt))``, the "full jitter" schedule
of AWS's Architecture Blog post "Exponential Backoff And Jitter" (Marc Brooker, 2015), which
spreads retries of many clients best.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from blaze_ai.config.schema import RetryConfig


@dataclass(frozen=True, slots=True)
class Backoff:
    """Back-off schedule; times in seconds.

    Attributes:
        base_s: the cap of the first retry's delay.
        max_s: the largest delay.
    """

    base_s: float
    max_s: float

    @classmethod
    def from_config(cls, config: RetryConfig) -> Backoff:
        """The schedule of a model's ``retry`` settings."""
        return cls(config.backoff_base_s, config.backoff_max_s)

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``attempt`` (0 for the first retry), in seconds."""
        cap = min(self.max_s, self.base_s * (2 ** max(0, attempt)))
        return (rng or random).uniform(0.0, cap)
