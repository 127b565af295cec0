"""What every cache level shares: keys, entries, the level protocol, and outage tracking.

An entry is opaque bytes plus the few fields every level needs (kind, model, expiry), so one
level implementation stores text answers today and images later. Expiry is wall-clock time
(seconds since the epoch) because entries outlive the process that wrote them (disk, Redis).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from blaze_ai.resilience.clock import Clock

logger = logging.getLogger(__name__)


class Level(StrEnum):
    """The cache levels, fastest first."""

    MEMORY = "memory"
    DISK = "disk"
    REDIS = "redis"


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one answer is stored.

    Attributes:
        model: the served model's canonical name (entries are cleared per model).
        digest: hex SHA-256 of the canonical key material (see :mod:`blaze_ai.cache.keys`).
    """

    model: str
    digest: str

    def __str__(self) -> str:
        return f"{self.model}:{self.digest}"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One stored answer.

    Attributes:
        kind: what ``payload`` encodes (``text``; ``images`` later), so a reader never decodes
            one kind as another.
        model: the served model's canonical name.
        payload: the encoded answer (see :mod:`blaze_ai.cache.codec`).
        expires_at: wall-clock time (seconds since the epoch) after which the entry is gone.
    """

    kind: str
    model: str
    payload: bytes
    expires_at: float

    def expired(self, now: float) -> bool:
        """True once ``now`` (wall-clock seconds) has reached ``expires_at``."""
        return now >= self.expires_at

    def encode(self) -> bytes:
        """``{"kind","model","expires_at"}`` as one JSON line, a newline, then the payload."""
        head = {"kind": self.kind, "model": self.model, "expires_at": self.expires_at}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.payload

    @classmethod
    def decode(cls, data: bytes) -> CacheEntry:
        """The inverse of :meth:`encode`.

        Raises:
            ValueError: ``data`` is not an encoded entry.
        """
        head_bytes, sep, payload = data.partition(b"\n")
        if not sep:
            raise ValueError("not a cache entry")
        head = json.loads(head_bytes)
        return cls(str(head["kind"]), str(head["model"]), payload, float(head["expires_at"]))


@dataclass(frozen=True, slots=True)
class LevelStats:
    """Figures of one level since the process started.

    Attributes:
        level: which level.
        entries: entries held now (None where counting is not cheap, e.g. Redis).
        size_bytes: bytes held now (estimated in memory; None for Redis).
        max_bytes: the level's bound in bytes (None for Redis, which Redis itself bounds).
        hits: lookups answered by this level.
        misses: lookups this level could not answer.
        stores: entries written.
        evictions: entries dropped to stay under ``max_bytes`` (memory only).
        expirations: entries found expired on lookup and dropped.
        errors: failed or timed-out calls (disk, Redis).
        outages: times the level went from working to failing.
        up: False while the level is failing and being skipped.
    """

    level: Level
    entries: int | None
    size_bytes: int | None
    max_bytes: int | None
    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    expirations: int = 0
    errors: int = 0
    outages: int = 0
    up: bool = True


@dataclass(slots=True)
class EntryCounters:
    """Hits, misses, stores, evictions and expirations of a cache level; :meth:`accept` reads
    the encoded entries of the disk and Redis levels."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    expirations: int = 0

    def accept(self, data: object, now: float) -> CacheEntry | None:
        """The live entry encoded in ``data`` (None for no data, unreadable or expired data),
        counted as a hit or a miss."""
        if not isinstance(data, bytes):
            self.misses += 1
            return None
        try:
            entry = CacheEntry.decode(data)
        except (ValueError, KeyError):
            self.misses += 1
            return None
        if entry.expired(now):
            self.expirations += 1
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def stats(
        self,
        level: Level,
        tracker: OutageTracker | None = None,
        *,
        entries: int | None = None,
        size_bytes: int | None = None,
        max_bytes: int | None = None,
    ) -> LevelStats:
        """The level's :class:`LevelStats` from these counters and its outage tracker (none for
        a level that cannot fail, such as memory)."""
        return LevelStats(
            level=level,
            entries=entries,
            size_bytes=size_bytes,
            max_bytes=max_bytes,
            hits=self.hits,
            misses=self.misses,
            stores=self.stores,
            evictions=self.evictions,
            expirations=self.expirations,
            errors=tracker.errors if tracker is not None else 0,
            outages=tracker.outages if tracker is not None else 0,
            up=tracker.up if tracker is not None else True,
        )


class CacheLevel(Protocol):
    """One cache level. No method raises for a failure of the store behind it: a failure
    counts as a miss (``get``), a skipped write (``set``) or ``None`` (``clear``)."""

    level: Level

    async def start(self) -> None:
        """Open files or create clients (no network round trip needed)."""
        ...

    async def stop(self) -> None:
        """Close everything :meth:`start` opened."""
        ...

    async def get(self, key: CacheKey) -> CacheEntry | None:
        """The live entry stored under ``key``, or None."""
        ...

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` until ``entry.expires_at``."""
        ...

    async def clear(self, model: str | None) -> int | None:
        """Drop every entry (of ``model`` only, when given); return how many, None on failure."""
        ...

    async def stats(self) -> LevelStats:
        """Current figures."""
        ...


class WallClock:
    """Wall-clock time, :func:`time.time`: entry expiry must mean the same in every process."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()


class OutageTracker:
    """Counts failures of a backing store, logs once per outage, and paces retries.

    After a failure the store is skipped for ``retry_interval_s``; then one call (not every
    waiting one) probes it again. A success ends the outage. Like a circuit breaker with a
    one-call half-open state (Nygard, *Release It!*, "Circuit Breaker").

    Args:
        name: the store's name in logs (``redis``, ``disk``).
        retry_interval_s: seconds to skip the store after a failure.
        clock: monotonic time source.
    """

    def __init__(self, name: str, retry_interval_s: float, clock: Clock) -> None:
        self.name = name
        self.errors = 0
        self.outages = 0
        self._retry_interval_s = retry_interval_s
        self._clock = clock
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
        now = self._clock.now()
        if now < self._retry_at:
            return False
        self._retry_at = now + self._retry_interval_s  # this caller probes; the others skip
        return True

    def failure(self, error: BaseException) -> None:
        """Record a failed call; the first failure of an outage is logged."""
        self.errors += 1
        now = self._clock.now()
        self._retry_at = now + self._retry_interval_s
        if self._down_since is None:
            self._down_since = now
            self.outages += 1
            logger.warning(
                "cache_level_down",
                extra={"level": self.name, "error": type(error).__name__, "detail": str(error)},
            )

    def success(self) -> None:
        """Record a working call; ends an outage (logged once)."""
        if self._down_since is not None:
            down_s = round(self._clock.now() - self._down_since, 3)
            self._down_since = None
            logger.info("cache_level_up", extra={"level": self.name, "down_s": down_s})
