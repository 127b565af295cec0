"""Figures of a cache level: the counters each level keeps and the snapshot it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from blaze_ai.cache.entry import CacheEntry, Level

if TYPE_CHECKING:
    from blaze_ai.resilience.outage import OutageTracker


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
