"""Retry back-off: exponential with full jitter.

``delay(attempt) = uniform(0, min(max_s, base_s * 2 ** attempt))``, the "full jitter" schedule
of AWS's Architecture Blog post "Exponential Backoff And Jitter" (Marc Brooker, 2015), which
spreads retries of many clients best.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Back-off schedule; times in seconds.

    Attributes:
        base_s: the cap of the first retry's delay.
        max_s: the largest delay.
    """

    base_s: float = 0.05
    max_s: float = 2.0

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay before retry number ``attempt`` (0 for the first retry), in seconds."""
        cap = min(self.max_s, self.base_s * (2 ** max(0, attempt)))
        return (rng or random).uniform(0.0, cap)
