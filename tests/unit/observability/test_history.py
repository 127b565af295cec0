"""The dashboard's history: points every interval, a bounded window, and ``since``."""

from __future__ import annotations

from collections.abc import Iterator

from blaze_ai.observability.history import MetricsHistory, as_dicts
from blaze_ai.observability.metrics import Metrics
from blaze_ai.observability.samples import GatewaySample


async def _no_traffic() -> GatewaySample:
    return GatewaySample()


def _history(times: list[float], window_s: float = 900.0) -> MetricsHistory:
    """A history whose clock reads ``times``, one per tick, every 2 s."""
    clock: Iterator[float] = iter(times)
    return MetricsHistory(
        Metrics(), _no_traffic, interval_s=2.0, window_s=window_s, clock=lambda: next(clock)
    )


async def test_since_the_last_time_sent_gives_no_point_again() -> None:
    """Regression (the dashboard's first poll loop): a point's ``t`` is sent rounded to the
    millisecond; passing it back as ``since`` gave that point again whenever the rounding went
    down, so the charts drew it twice."""
    history = _history([100.0, 102.0004, 104.0006])
    for _ in range(3):
        await history.tick()
    sent = as_dicts(history.points())
    assert [p["t"] for p in sent] == [102.0, 104.001]
    assert [p["t"] for p in as_dicts(history.points(since=sent[0]["t"]))] == [104.001]
    assert history.points(since=sent[-1]["t"]) == []
    assert len(history.points(since=None)) == 2


async def test_only_the_window_of_points_is_kept() -> None:
    history = _history([float(t) for t in range(0, 40, 2)], window_s=10.0)
    for _ in range(20):
        await history.tick()
    assert history.window_s == 10.0
    assert [p.t for p in history.points()] == [30.0, 32.0, 34.0, 36.0, 38.0]
