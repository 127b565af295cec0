"""Where the rate-limit counters live: this process (:class:`MemoryCounterStorage`) or Redis
(``limits``' :class:`~limits.aio.storage.RedisStorage` on redis-py), and how a failing Redis is
tracked (:class:`StorageHealth`: logged once per outage, skipped between probes).

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


class StorageHealth:
    """Whether the counters' storage works: logs ``rate_limit_storage_unavailable`` (warning)
    once when it starts failing and ``rate_limit_storage_recovered`` (info) once when it works
    again; while it fails, :meth:`allow` lets one call probe it every ``retry_interval_s``.

    Args:
        clock: wall-clock time source, in seconds.
        retry_interval_s: seconds the storage is skipped after a failure.
    """

    def __init__(self, clock: Callable[[], float], retry_interval_s: float) -> None:
        self.failures = 0
        self._clock = clock
        self._retry_interval_s = retry_interval_s
        self._down_since: float | None = None
        self._retry_at = 0.0

    @property
    def up(self) -> bool:
        """False during an outage."""
        return self._down_since is None

    def allow(self) -> bool:
        """True if a call may be made now; during an outage, True once per retry interval."""
        if self._down_since is None:
            return True
        now = self._clock()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._retry_interval_s  # this caller probes; the others skip
        return True

    def failure(self, error: BaseException) -> None:
        """Record a failed call; the first of an outage is logged."""
        self.failures += 1
        now = self._clock()
        self._retry_at = now + self._retry_interval_s
        if self._down_since is None:
            self._down_since = now
            logger.warning(
                "rate_limit_storage_unavailable",
                extra={"error": type(error).__name__, "detail": str(error)},
            )

    def success(self) -> None:
        """Record a working call; ends an outage (logged once)."""
        if self._down_since is not None:
            down_s = round(self._clock() - self._down_since, 3)
            self._down_since = None
            logger.info("rate_limit_storage_recovered", extra={"down_s": down_s})
