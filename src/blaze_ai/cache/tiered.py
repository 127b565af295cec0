"""The levels together: read-through memory -> disk -> Redis, promotion, write-through."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from blaze_ai.cache.disk import DiskLevel
from blaze_ai.cache.entry import CacheEntry, CacheKey, CacheLevel, Level
from blaze_ai.cache.memory import MemoryLevel
from blaze_ai.cache.redis import RedisLevel
from blaze_ai.cache.stats import LevelStats
from blaze_ai.config.schema import CacheConfig
from blaze_ai.resilience.clock import Clock, WallClock

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Found:
    """A lookup's answer: the entry and the level that held it."""

    entry: CacheEntry
    level: Level


class TieredCache:
    """Looks levels up fastest first; a hit is copied into the faster levels that missed it
    (keeping its expiry); a store goes to every level at once.

    Args:
        levels: the enabled levels, fastest first (at least one).
    """

    def __init__(self, levels: Sequence[CacheLevel]) -> None:
        if not levels:
            raise ValueError("a cache needs at least one level")
        self._levels = list(levels)

    @classmethod
    def from_config(cls, config: CacheConfig, clock: Clock | None = None) -> TieredCache | None:
        """The levels ``config`` enables, in order; None when it enables none."""
        clock = clock or WallClock()
        levels: list[CacheLevel] = []
        if config.memory is not None:
            levels.append(MemoryLevel(config.memory.max_bytes, clock))
        if config.disk is not None:
            levels.append(DiskLevel(config.disk.directory, config.disk.max_bytes, clock))
        if config.redis is not None:
            redis = config.redis
            levels.append(
                RedisLevel(
                    redis.url,
                    key_prefix=redis.key_prefix,
                    timeout_s=redis.timeout_s,
                    retry_interval_s=redis.retry_interval_s,
                    clock=clock,
                )
            )
        return cls(levels) if levels else None

    @property
    def levels(self) -> tuple[Level, ...]:
        """The working levels, fastest first."""
        return tuple(level.level for level in self._levels)

    async def start(self) -> None:
        """Start every level; one that cannot start (say, an unwritable folder) is logged
        and left out, so the others still serve."""
        started = []
        for level in self._levels:
            try:
                await level.start()
            except (OSError, sqlite3.Error) as exc:
                logger.error(
                    "cache_level_unavailable", extra={"level": level.level, "error": str(exc)}
                )
                await level.stop()
                continue
            started.append(level)
        self._levels = started

    async def stop(self) -> None:
        """Stop every level."""
        for level in self._levels:
            await level.stop()

    async def get(self, key: CacheKey) -> Found | None:
        """The entry under ``key`` from the fastest level that holds it, or None."""
        for index, level in enumerate(self._levels):
            entry = await level.get(key)
            if entry is not None:
                await asyncio.gather(*(faster.set(key, entry) for faster in self._levels[:index]))
                return Found(entry, level.level)
        return None

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        """Store ``entry`` in every level (concurrently)."""
        await asyncio.gather(*(level.set(key, entry) for level in self._levels))

    async def clear(
        self, model: str | None = None, levels: Collection[Level] | None = None
    ) -> dict[Level, int | None]:
        """Drop the entries of ``model`` (or all) from ``levels`` (or all).

        Returns:
            entries dropped per level; None for a level that failed (e.g. Redis down).
        """
        chosen = [lv for lv in self._levels if levels is None or lv.level in levels]
        counts = await asyncio.gather(*(level.clear(model) for level in chosen))
        return {level.level: count for level, count in zip(chosen, counts, strict=True)}

    async def stats(self) -> list[LevelStats]:
        """Every level's figures, fastest first."""
        return [await level.stats() for level in self._levels]
