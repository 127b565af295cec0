"""Circuit breaker state machine on a fake clock: every transition, no sleeping."""

from __future__ import annotations

from blaze_ai.config.schema import BreakerConfig
from blaze_ai.resilience.breaker import BreakerState, CircuitBreaker
from tests.fakes import FakeClock


def breaker(**policy: object) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    options = {"failure_threshold": 3, "cooldown_s": 10.0, "success_threshold": 2, **policy}
    return CircuitBreaker(BreakerConfig(**options), clock), clock  # type: ignore[arg-type]


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert b.acquire()
        b.record_failure()


def test_closed_opens_after_consecutive_failures() -> None:
    b, _ = breaker()
    fail(b, 2)
    assert b.state is BreakerState.CLOSED
    fail(b, 1)
    assert b.state is BreakerState.OPEN
    assert not b.allows() and not b.acquire()
    assert b.times_opened == 1


def test_a_success_resets_the_consecutive_count() -> None:
    b, _ = breaker()
    fail(b, 2)
    assert b.acquire()
    b.record_success()
    fail(b, 2)
    assert b.state is BreakerState.CLOSED


def test_open_rejects_until_cooldown_then_half_open() -> None:
    b, clock = breaker()
    fail(b, 3)
    clock.advance(9.9)
    assert b.state is BreakerState.OPEN
    assert 0 < b.retry_after_s() <= 0.1 + 1e-9
    clock.advance(0.1)
    assert b.state is BreakerState.HALF_OPEN
    assert b.retry_after_s() == 0


def test_half_open_limits_probes() -> None:
    b, clock = breaker(half_open_max_requests=2)
    fail(b, 3)
    clock.advance(10)
    assert b.acquire() and b.acquire()
    assert not b.acquire()  # third concurrent probe refused
    b.record_ignored()  # a probe that ended without a verdict frees its slot
    assert b.acquire()


def test_half_open_closes_after_success_threshold() -> None:
    b, clock = breaker()
    fail(b, 3)
    clock.advance(10)
    assert b.acquire()
    b.record_success()
    assert b.state is BreakerState.HALF_OPEN  # one success is not enough
    assert b.acquire()
    b.record_success()
    assert b.state is BreakerState.CLOSED


def test_half_open_failure_reopens() -> None:
    b, clock = breaker()
    fail(b, 3)
    clock.advance(10)
    assert b.acquire()
    b.record_success()
    assert b.acquire()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert b.times_opened == 2
    clock.advance(5)
    assert b.state is BreakerState.OPEN  # a fresh cooldown started at the re-open


def test_error_rate_opens_over_the_window() -> None:
    b, _clock = breaker(
        failure_threshold=100, error_rate_threshold=0.5, min_requests=10, window_s=30
    )
    for i in range(10):
        assert b.acquire()
        if i % 3 == 0:
            b.record_failure()
        else:
            b.record_success()
    assert b.state is BreakerState.CLOSED  # 4/10 failed
    for _ in range(2):
        assert b.acquire()
        b.record_failure()
    assert b.state is BreakerState.CLOSED  # 6/12 is not over 50%
    assert b.acquire()
    b.record_failure()
    assert b.state is BreakerState.OPEN  # 7/13 is


def test_old_outcomes_leave_the_window() -> None:
    b, clock = breaker(failure_threshold=100, error_rate_threshold=0.5, min_requests=4, window_s=30)
    fail(b, 3)
    clock.advance(31)
    assert b.error_rate() == 0.0
    for _ in range(3):
        assert b.acquire()
        b.record_success()
    assert b.state is BreakerState.CLOSED


def test_ignored_outcomes_never_count() -> None:
    b, _ = breaker()
    for _ in range(20):
        assert b.acquire()
        b.record_ignored()
    assert b.state is BreakerState.CLOSED
    assert b.error_rate() == 0.0
