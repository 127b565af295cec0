"""Level 1: an in-process LRU bounded by bytes and by each entry's expiry.

Runs on the event loop only (no locks): every operation is a few dict operations, so a hit
costs microseconds.
"""

from __future__ import annotations

from collections import OrderedDict

from blaze_ai.cache.entry import CacheEntry, CacheKey, Level
from blaze_ai.cache.stats import EntryCounters, LevelStats
from blaze_ai.resilience.clock import Clock

ENTRY_OVERHEAD_BYTES = 240
"""Estimated Python memory of one entry besides its payload and strings: the key and entry
objects, the float, and the ordered dict's node (measured with ``sys.getsizeof``, rounded up)."""


def entry_size(key: CacheKey, entry: CacheEntry) -> int:
    """Estimated bytes one entry holds in memory: payload, strings, and a fixed overhead."""
    return (
        len(entry.payload)
        + len(key.digest)
        + len(key.model)
        + len(entry.model)
        + len(entry.kind)
        + ENTRY_OVERHEAD_BYTES
    )


class MemoryLevel:
    """Least-recently-used entries are evicted once the estimated total passes ``max_bytes``;
    an expired entry is dropped when it is looked up. An entry larger than ``max_bytes`` is
    not stored.

    Args:
        max_bytes: bound on the estimated bytes of all entries.
        clock: wall-clock time source for expiry (seconds since the epoch).
    """

    level = Level.MEMORY

    def __init__(self, max_bytes: int, clock: Clock) -> None:
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[CacheKey, tuple[CacheEntry, int]] = OrderedDict()
        self._bytes = 0
        self._counts = EntryCounters()

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._bytes = 0

    async def get(self, key: CacheKey) -> CacheEntry | None:
        """The live entry under ``key`` (now the most recently used), or None."""
        item = self._entries.get(key)
        if item is None:
            self._counts.misses += 1
            return None
        entry = item[0]
        if entry.expired(self._clock.now()):
            self._remove(key)
            self._counts.expirations += 1
            self._counts.misses += 1
            return None
        self._entries.move_to_end(key)
        self._counts.hits += 1
        return entry

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        """Store ``entry``, evicting least recently used entries to stay under ``max_bytes``."""
        size = entry_size(key, entry)
        if size > self.max_bytes:
            return
        if key in self._entries:
            self._remove(key)
        self._entries[key] = (entry, size)
        self._bytes += size
        self._counts.stores += 1
        while self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self._counts.evictions += 1

    async def clear(self, model: str | None) -> int:
        """Drop every entry, or those of ``model``; return how many were dropped."""
        doomed = [k for k in self._entries if model is None or k.model == model]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    async def stats(self) -> LevelStats:
        """Entries, estimated bytes and counters."""
        return self._counts.stats(
            self.level, entries=len(self._entries), size_bytes=self._bytes, max_bytes=self.max_bytes
        )

    def _remove(self, key: CacheKey) -> None:
        _, size = self._entries.pop(key)
        self._bytes -= size
