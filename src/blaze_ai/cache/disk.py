"""Level 2: ``diskcache`` (SQLite plus files) in a folder, bounded by size; survives restarts.

Every ``diskcache`` call blocks on disk I/O, so each runs on this level's own worker thread,
never on the event loop. Entries are tagged with their model, so one model is cleared through
``diskcache``'s tag index without scanning the rest.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import diskcache

from blaze_ai.cache.entry import CacheEntry, CacheKey, Level
from blaze_ai.cache.stats import EntryCounters, LevelStats
from blaze_ai.resilience.clock import Clock
from blaze_ai.resilience.outage import OutageTracker

T = TypeVar("T")

DISK_ERRORS = (OSError, sqlite3.Error, diskcache.Timeout)
"""What a failing disk raises: full or read-only disk, a corrupt or locked database."""

BUSY_TIMEOUT_S = 1.0
"""Bound on waiting for SQLite's lock (another process writing the same folder)."""

RETRY_INTERVAL_S = 5.0
"""After a disk failure the level is skipped for this long."""


class DiskLevel:
    """Entries in ``diskcache.Cache`` under ``directory``, culled least-recently-used first
    once the folder passes ``max_bytes``; expired entries are dropped by ``diskcache``.

    Args:
        directory: the folder (created if missing; ``~`` is expanded).
        max_bytes: size bound of the folder, in bytes (``diskcache``'s ``size_limit``).
        clock: wall-clock time source for expiry (seconds since the epoch).
    """

    level = Level.DISK

    def __init__(self, directory: Path, max_bytes: int, clock: Clock) -> None:
        self.directory = Path(directory).expanduser()
        self.max_bytes = max_bytes
        self._clock = clock
        self._tracker = OutageTracker("disk", RETRY_INTERVAL_S, clock)
        self._cache: diskcache.Cache | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._counts = EntryCounters()

    async def start(self) -> None:
        """Open (or create) the folder on the worker thread.

        Raises:
            OSError, sqlite3.Error: the folder cannot be created or opened.
        """
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blaze-cache-disk")
        self._cache = await self._run(self._open)

    async def stop(self) -> None:
        """Close the database and the worker thread."""
        if self._cache is not None:
            await self._run(self._cache.close)
            self._cache = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def get(self, key: CacheKey) -> CacheEntry | None:
        """The live entry under ``key``, or None (also when the disk fails)."""
        data = await self._call(lambda cache: cache.get(str(key)))
        return self._counts.accept(data, self._clock.now())

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        """Store ``entry`` (expiring with it); a disk failure skips the write."""
        ttl_s = entry.expires_at - self._clock.now()
        if ttl_s <= 0:
            return
        data = entry.encode()
        stored = await self._call(
            lambda cache: cache.set(str(key), data, expire=ttl_s, tag=entry.model)
        )
        if stored:
            self._counts.stores += 1

    async def clear(self, model: str | None) -> int | None:
        """Drop every entry, or those tagged ``model``; None if the disk failed."""
        if model is None:
            count = await self._call(lambda cache: cache.clear(retry=True))
        else:
            count = await self._call(lambda cache: cache.evict(model, retry=True))
        return count if isinstance(count, int) else None

    async def stats(self) -> LevelStats:
        """Entries and bytes on disk, and counters."""
        entries = await self._call(len)
        volume = await self._call(lambda cache: cache.volume())
        return self._counts.stats(
            self.level,
            self._tracker,
            entries=entries if isinstance(entries, int) else None,
            size_bytes=volume if isinstance(volume, int) else None,
            max_bytes=self.max_bytes,
        )

    def _open(self) -> diskcache.Cache:
        self.directory.mkdir(parents=True, exist_ok=True)
        return diskcache.Cache(
            str(self.directory),
            timeout=BUSY_TIMEOUT_S,
            size_limit=self.max_bytes,
            eviction_policy="least-recently-used",
            tag_index=True,
        )

    async def _call(self, fn: Callable[[diskcache.Cache], object]) -> object:
        """Run ``fn(cache)`` on the worker thread; None when closed, skipped or failing."""
        cache = self._cache
        if cache is None or not self._tracker.allow():
            return None
        try:
            result = await self._run(fn, cache)
        except DISK_ERRORS as exc:
            self._tracker.failure(exc)
            return None
        self._tracker.success()
        return result

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)
