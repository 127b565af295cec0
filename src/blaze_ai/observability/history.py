"""A short in-memory history of the metrics, for the dashboard's live charts.

Every ``interval_s`` the history takes a fresh gateway sample (:meth:`Metrics.update`), reads
the totals of every family once (:class:`Totals`: requests, errors, tokens, images, cache
lookups per level, and the cumulative buckets of the request, first-token and per-deployment
latency histograms) and stores one :class:`Point`: the rates and percentiles over the interval
just ended, from the differences of two totals. Nothing is added to the request path: the
history reads what the metrics count anyway. ``window_s`` of points are kept (15 minutes at
2 s: 450 points).

Percentiles are computed from histogram buckets as Prometheus' ``histogram_quantile`` does
(linear interpolation inside the bucket that holds the rank), so they match what a Grafana
panel on the same metrics shows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from blaze_ai.observability.metrics import Metrics
from blaze_ai.observability.samples import GatewaySample
from blaze_ai.resilience.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

Buckets = tuple[tuple[float, float], ...]
"""A histogram's cumulative buckets: ``(upper bound, count)``, ascending, ``+Inf`` last."""

_SUCCESSFUL = frozenset({"success", "cancelled"})

T_DECIMALS = 3
"""A point's time is sent rounded to the millisecond; ``points(since)`` compares that rounded
time, so a client that passes back the last ``t`` it got does not get that point again."""


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """The ``q``-quantile (0-1) of the observations in cumulative ``buckets``, as Prometheus'
    ``histogram_quantile``: linear interpolation inside the bucket holding the rank, the lowest
    bucket starting at 0, and the highest finite bound when the rank falls in ``+Inf``.

    Returns None when the buckets hold no observation.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def _minus(now: Buckets, before: Buckets | None) -> Buckets:
    if not before:
        return now
    old = dict(before)
    return tuple((bound, count - old.get(bound, 0.0)) for bound, count in now)


@dataclass(slots=True)
class Totals:
    """Every figure the charts need, summed over labels, at one moment (``t``: Unix seconds)."""

    t: float
    requests: float = 0.0
    errors: float = 0.0
    completion_tokens: float = 0.0
    images: float = 0.0
    latency: Buckets = ()
    ttft: Buckets = ()
    deployment_latency: dict[str, Buckets] = field(default_factory=dict)
    cache_hits: dict[str, float] = field(default_factory=dict)
    cache_misses: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Point:
    """The charts' values over one interval ending at ``t`` (Unix seconds): per-second rates,
    latency percentiles in seconds (None without requests), and each cache level's hit ratio
    (None without lookups)."""

    t: float
    requests_per_s: float
    errors_per_s: float
    tokens_per_s: float
    images_per_s: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    cache_hit_ratio: Mapping[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        """The point as JSON-ready values (times rounded to the millisecond)."""
        return {
            "t": round(self.t, T_DECIMALS),
            "requests_per_s": round(self.requests_per_s, 4),
            "errors_per_s": round(self.errors_per_s, 4),
            "tokens_per_s": round(self.tokens_per_s, 3),
            "images_per_s": round(self.images_per_s, 4),
            "latency_p50_s": _round(self.latency_p50_s),
            "latency_p99_s": _round(self.latency_p99_s),
            "ttft_p50_s": _round(self.ttft_p50_s),
            "ttft_p99_s": _round(self.ttft_p99_s),
            "cache_hit_ratio": {k: _round(v) for k, v in self.cache_hit_ratio.items()},
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def read_totals(families: Iterable[Any], t: float) -> Totals:
    """The :class:`Totals` of metric ``families`` (``Metrics.families()``) at ``t``."""
    totals = Totals(t)
    latency: dict[float, float] = defaultdict(float)
    ttft: dict[float, float] = defaultdict(float)
    per_deployment: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in families:
        name = family.name
        for s in family.samples:
            if name == "blaze_requests":
                totals.requests += s.value
                if s.labels.get("outcome") not in _SUCCESSFUL:
                    totals.errors += s.value
            elif name == "blaze_completion_tokens":
                totals.completion_tokens += s.value
            elif name == "blaze_images":
                totals.images += s.value
            elif name == "blaze_cache_requests":
                target = totals.cache_hits if s.labels["result"] == "hit" else totals.cache_misses
                target[s.labels["level"]] = target.get(s.labels["level"], 0.0) + s.value
            elif s.name.endswith("_bucket"):
                bound = float(s.labels["le"])
                if name == "blaze_request_duration_seconds":
                    latency[bound] += s.value
                elif name == "blaze_time_to_first_token_seconds":
                    ttft[bound] += s.value
                elif name == "blaze_deployment_latency_seconds":
                    per_deployment[s.labels["deployment"]][bound] += s.value
    totals.latency = tuple(sorted(latency.items()))
    totals.ttft = tuple(sorted(ttft.items()))
    totals.deployment_latency = {d: tuple(sorted(b.items())) for d, b in per_deployment.items()}
    return totals


def point_between(before: Totals, now: Totals) -> Point:
    """The :class:`Point` of the interval from ``before`` to ``now``."""
    dt = max(now.t - before.t, 1e-9)
    latency = _minus(now.latency, before.latency)
    ttft = _minus(now.ttft, before.ttft)
    ratios: dict[str, float | None] = {}
    for level in sorted(set(now.cache_hits) | set(now.cache_misses)):
        hits = now.cache_hits.get(level, 0.0) - before.cache_hits.get(level, 0.0)
        misses = now.cache_misses.get(level, 0.0) - before.cache_misses.get(level, 0.0)
        ratios[level] = hits / (hits + misses) if hits + misses > 0 else None
    return Point(
        t=now.t,
        requests_per_s=(now.requests - before.requests) / dt,
        errors_per_s=(now.errors - before.errors) / dt,
        tokens_per_s=(now.completion_tokens - before.completion_tokens) / dt,
        images_per_s=(now.images - before.images) / dt,
        latency_p50_s=histogram_quantile(0.5, latency),
        latency_p99_s=histogram_quantile(0.99, latency),
        ttft_p50_s=histogram_quantile(0.5, ttft),
        ttft_p99_s=histogram_quantile(0.99, ttft),
        cache_hit_ratio=ratios,
    )


class MetricsHistory:
    """Samples the metrics every ``interval_s`` and keeps ``window_s`` of :class:`Point`.

    Args:
        metrics: what is read.
        sample: takes a fresh gateway sample (``Gateway.sample``), for the scrape-time families.
        interval_s: seconds between two points.
        window_s: seconds of points kept.
        latency_window_s: seconds over which :meth:`deployment_latency` is computed.
        clock: Unix time source (injected by tests).
        sleep: awaitable sleep (injected by tests).
    """

    def __init__(
        self,
        metrics: Metrics,
        sample: Callable[[], Awaitable[GatewaySample]],
        *,
        interval_s: float = 2.0,
        window_s: float = 900.0,
        latency_window_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval_s = interval_s
        self.window_s = window_s
        self._metrics = metrics
        self._sample = sample
        self._clock = clock
        self._sleep = sleep
        self._points: deque[Point] = deque(maxlen=max(1, math.ceil(window_s / interval_s)))
        self._totals: deque[Totals] = deque(
            maxlen=max(2, math.ceil(latency_window_s / interval_s) + 1)
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Take the first totals now, then a point every ``interval_s`` in the background."""
        await self.tick()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop sampling."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def tick(self) -> Point | None:
        """Sample now and store the point since the previous sample (None on the first)."""
        self._metrics.update(await self._sample())
        totals = read_totals(self._metrics.families(), self._clock())
        previous = self._totals[-1] if self._totals else None
        self._totals.append(totals)
        if previous is None:
            return None
        point = point_between(previous, totals)
        self._points.append(point)
        return point

    def points(self, since: float | None = None) -> list[Point]:
        """The points kept, oldest first; with ``since``, only those whose time as sent
        (rounded to :data:`T_DECIMALS`) is after it."""
        if since is None:
            return list(self._points)
        return [p for p in self._points if round(p.t, T_DECIMALS) > since]

    def deployment_latency(self) -> dict[str, tuple[float | None, float | None]]:
        """Each deployment's (p50, p99) latency in seconds over the latency window (None
        without a successful attempt in it)."""
        if not self._totals:
            return {}
        oldest, newest = self._totals[0], self._totals[-1]
        single = len(self._totals) == 1
        out = {}
        for name, buckets in newest.deployment_latency.items():
            window = buckets if single else _minus(buckets, oldest.deployment_latency.get(name))
            out[name] = (histogram_quantile(0.5, window), histogram_quantile(0.99, window))
        return out

    async def _loop(self) -> None:
        while True:
            await self._sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:  # a failed sample must not end the history
                logger.exception("metrics_history_sample_failed")


def as_dicts(points: Sequence[Point]) -> list[dict[str, Any]]:
    """``points`` as JSON-ready dicts."""
    return [p.to_dict() for p in points]
