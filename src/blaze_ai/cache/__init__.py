"""The response cache: memory (L1), disk (L2) and Redis (L3) levels behind one read-through
:class:`~blaze_ai.cache.tiered.TieredCache`, with canonical keys and per-model policies."""

from blaze_ai.cache.entry import CacheEntry, CacheKey, Level
from blaze_ai.cache.stats import LevelStats
from blaze_ai.cache.tiered import Found, TieredCache

__all__ = ["CacheEntry", "CacheKey", "Found", "Level", "LevelStats", "TieredCache"]
