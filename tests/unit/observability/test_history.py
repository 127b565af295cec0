"""The dashboard's history: Prometheus' histogram_quantile, rates between two samples, the
window, ``since``, and per-deployment latency percentiles; on a fake clock, with no sleeping."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blaze_ai.observability.history import MetricsHistory, as_dicts, histogram_quantile
from blaze_ai.observability.metrics import Metrics
from blaze_ai.observability.request import RequestRecord
from blaze_ai.observability.samples import CacheLevelSample, GatewaySample
from blaze_ai.types import Usage


def test_histogram_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    buckets = ((0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (float("inf"), 40.0))
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)  # rank 20 of 10..30 in 0.1..0.5
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.1, buckets) == pytest.approx(0.04)  # the first bucket from 0
    assert histogram_quantile(0.99, ((0.1, 1.0), (float("inf"), 5.0))) == 0.1  # in +Inf
    assert histogram_quantile(0.5, ((0.1, 0.0), (float("inf"), 0.0))) is None
    assert histogram_quantile(0.5, ()) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def answered(metrics: Metrics, latency_s: float, tokens: int = 0, status: int = 200) -> None:
    record = RequestRecord("/v1/chat/completions", started=0.0)
    record.model = "m"
    record.usage = Usage(1, tokens)
    metrics.observe_request(record, status, latency_s)


async def test_points_are_rates_and_percentiles_of_each_interval() -> None:
    metrics, clock = Metrics(), Clock()
    lookups = {"hits": 0, "misses": 0}

    async def sample() -> GatewaySample:
        level = CacheLevelSample("memory", lookups["hits"], lookups["misses"], 0, 0)
        return GatewaySample(cache_levels=(level,))

    history = MetricsHistory(metrics, sample, interval_s=2.0, window_s=6.0, clock=clock)
    assert await history.tick() is None  # the first totals only
    for _ in range(4):
        answered(metrics, 0.04, tokens=10)
    answered(metrics, 0.2, status=500)
    lookups.update(hits=2, misses=2)
    clock.now += 2.0
    point = await history.tick()
    assert point is not None
    assert point.requests_per_s == 2.5 and point.errors_per_s == 0.5
    assert point.tokens_per_s == 20.0
    assert point.latency_p50_s is not None and 0.025 < point.latency_p50_s <= 0.05
    assert point.latency_p99_s is not None and 0.1 < point.latency_p99_s <= 0.25
    assert point.cache_hit_ratio == {"memory": 0.5}  # 2 hits, 2 misses in the interval
    clock.now += 2.0
    quiet = await history.tick()
    assert quiet is not None and quiet.requests_per_s == 0 and quiet.latency_p50_s is None
    assert quiet.cache_hit_ratio == {"memory": None}
    for _ in range(3):
        clock.now += 2.0
        await history.tick()
    assert len(history.points()) == 3  # 6 s of 2 s points
    assert [p.t for p in history.points(since=clock.now - 3)] == [clock.now - 2, clock.now]


async def test_deployment_latency_covers_the_latency_window_only() -> None:
    metrics, clock = Metrics(), Clock()

    async def sample() -> GatewaySample:
        return GatewaySample()

    history = MetricsHistory(metrics, sample, interval_s=1.0, latency_window_s=2.0, clock=clock)
    observe = metrics.deployment_latency("m", "m/0")
    observe(5.0)  # slow, long ago
    await history.tick()
    assert history.deployment_latency()["m/0"][0] is not None  # since start, on one sample
    for _ in range(3):
        clock.now += 1.0
        observe(0.02)
        await history.tick()
    p50, p99 = history.deployment_latency()["m/0"]
    assert p50 is not None and p99 is not None and p99 <= 0.025  # the slow one left the window


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
