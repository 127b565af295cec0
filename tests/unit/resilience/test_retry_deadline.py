"""Back-off schedule and deadlines."""

from __future__ import annotations

import random

from blaze_ai.resilience.deadline import Deadline
from blaze_ai.resilience.retry import Backoff
from tests.fakes import FakeClock


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    backoff = Backoff(base_s=0.1, max_s=1.0)
    rng = random.Random(0)
    for attempt, cap in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (10, 1.0)]:
        delays = [backoff.delay_s(attempt, rng) for _ in range(200)]
        assert all(0 <= d <= cap for d in delays)
        assert max(delays) > cap * 0.8  # jitter spreads over the whole range


def test_deadline_on_a_fake_clock() -> None:
    clock = FakeClock(100.0)
    deadline = Deadline.after(5, clock)
    assert deadline.remaining_s() == 5
    clock.advance(4)
    assert not deadline.expired()
    clock.advance(2)
    assert deadline.expired() and deadline.remaining_s() == 0
