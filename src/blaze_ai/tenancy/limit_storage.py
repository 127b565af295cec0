"""Where the rate-limit counters live: this process (:class:`MemoryCounterStorage`) or Redis
(``limits``' :class:`~limits.aio.storage.RedisStorage` on redis-py), and how a failing Redis is
tracked (:func:`storage_health`: logged once per outage, skipped between probes).

``limits``' own ``MemoryStorage`` is not used: each of its ``incr`` calls schedules a task that
scans every key it holds, so with thousands of live keys every event-loop turn costs
milliseconds. :class:`MemoryCounterStorage` expires keys lazily and sweeps them at most once per
``SWEEP_INTERVAL_S``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from limits.aio.storage import RedisStorage, Storage
from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from blaze_ai.resilience.outage import OutageTracker

logger = logging.getLogger(__name__)

STORAGE_ERRORS = (RedisError, OSError, TimeoutError)
"""What a failing Redis raises: refused or reset connections, timeouts, server errors."""

REDIS_TIMEOUT_S = 0.5
"""Socket connect and read timeout of each Redis call, in seconds: a request never hangs on a
slow or unreachable Redis."""

REDIS_KEY_PREFIX = "blaze:limits"
"""Every rate-limit key in Redis starts with it."""

RETRY_INTERVAL_S = 1.0
"""Seconds Redis is skipped (requests admitted unchecked) after a failed call; then one request
probes it again."""

SWEEP_INTERVAL_S = 1.0
"""Seconds between two sweeps of the expired keys of :class:`MemoryCounterStorage`."""


class MemoryCounterStorage(Storage):
    """Fixed-window counters in a dict (``key -> [count, expires_at]``) for one process.

    Every operation is synchronous inside (no lock needed on one event loop). An expired key
    reads as 0 and is dropped when it is next counted, or by a sweep (at most one per
    ``SWEEP_INTERVAL_S``, amortised over the calls in between).

    Args:
        clock: wall-clock time source, in seconds.
    """

    STORAGE_SCHEME = None  # not registered under a URI scheme: built by the RateLimiter only

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self._clock = clock
        self._counters: dict[str, list[float]] = {}
        self._sweep_at = 0.0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        """Nothing here fails but bugs; ``limits`` asks for the storage's error types."""
        return ValueError

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add ``amount`` (may be negative) to ``key``; a new key lives ``expiry`` seconds.
        Returns the count after the addition."""
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now:
            entry = [0, now + expiry]
            self._counters[key] = entry
        entry[0] += amount
        return int(entry[0])

    async def get(self, key: str) -> int:
        """The count of ``key`` (0 when absent or expired)."""
        entry = self._counters.get(key)
        if entry is None or entry[1] <= self._clock():
            return 0
        return int(entry[0])

    async def get_expiry(self, key: str) -> float:
        """When ``key`` expires, in Unix seconds (now when absent or expired)."""
        now = self._clock()
        entry = self._counters.get(key)
        return entry[1] if entry is not None and entry[1] > now else now

    async def check(self) -> bool:
        """Always healthy."""
        return True

    async def reset(self) -> int | None:
        """Drop every key; returns how many there were."""
        count = len(self._counters)
        self._counters.clear()
        return count

    async def clear(self, key: str) -> None:
        """Drop ``key``."""
        self._counters.pop(key, None)

    def __len__(self) -> int:
        return len(self._counters)

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + SWEEP_INTERVAL_S
        expired = [key for key, entry in self._counters.items() if entry[1] <= now]
        for key in expired:
            del self._counters[key]


def open_redis(url: str) -> tuple[RedisStorage, Redis]:
    """A ``limits`` Redis storage for ``url`` (``redis://host:port/db``) and a redis-py client
    sharing its connection pool (for the ``max_parallel`` leases). Nothing connects yet.

    Each call is bounded by ``REDIS_TIMEOUT_S`` (connect and read) and never retried: a retry
    would multiply the latency a failing Redis adds to a request."""
    client = Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
    shared: dict[str, Any] = {"connection_pool": client.connection_pool}
    storage = RedisStorage(
        f"async+{url}", implementation="redispy", key_prefix=REDIS_KEY_PREFIX, **shared
    )
    return storage, client


class _CallableClock:
    """A :class:`~blaze_ai.resilience.clock.Clock` over a ``() -> seconds`` function."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.now = clock


def storage_health(clock: Callable[[], float], retry_interval_s: float) -> OutageTracker:
    """Whether the counters' storage works: logs ``rate_limit_storage_unavailable`` (warning)
    once when it starts failing and ``rate_limit_storage_recovered`` (info) once when it works
    again; while it fails, ``allow()`` lets one call probe it every ``retry_interval_s``.

    Args:
        clock: wall-clock time source, in seconds.
        retry_interval_s: seconds the storage is skipped after a failure.
    """
    events = ("rate_limit_storage_unavailable", "rate_limit_storage_recovered")
    return OutageTracker(
        "redis", retry_interval_s, _CallableClock(clock), events=events, name_field="storage"
    )
