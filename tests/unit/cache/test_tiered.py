"""Read-through memory -> disk -> Redis, promotion of hits, write-through to every level."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from blaze_ai.cache.disk import DiskLevel
from blaze_ai.cache.entry import Level
from blaze_ai.cache.memory import MemoryLevel
from blaze_ai.cache.redis import RedisLevel
from blaze_ai.cache.tiered import TieredCache
from blaze_ai.config.schema import CacheConfig
from tests.fakes import FakeClock
from tests.redis_server import RedisServer
from tests.unit.cache.helpers import entry, key


async def three_levels(folder: Path, redis_url: str, clock: FakeClock) -> TieredCache:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    cache = TieredCache(
        [
            MemoryLevel(1 << 20, clock),
            DiskLevel(folder, 1 << 24, clock),
            RedisLevel(
                redis_url, key_prefix=prefix, timeout_s=0.5, retry_interval_s=1, clock=clock
            ),
        ]
    )
    await cache.start()
    return cache


async def test_read_through_in_order_with_promotion(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    clock = FakeClock(time.time())
    cache = await three_levels(tmp_path, redis_server.url, clock)
    stored = entry(b"answer", expires_at=clock.now() + 60)
    await cache.set(key(1), stored)
    found = await cache.get(key(1))
    assert found is not None and found.level is Level.MEMORY and found.entry == stored

    await cache.clear(levels={Level.MEMORY})
    found = await cache.get(key(1))
    assert found is not None and found.level is Level.DISK
    assert (await cache.get(key(1))).level is Level.MEMORY  # type: ignore[union-attr]

    await cache.clear(levels={Level.MEMORY, Level.DISK})
    found = await cache.get(key(1))
    assert found is not None and found.level is Level.REDIS
    assert found.entry.expires_at == stored.expires_at  # promotion keeps the expiry
    await cache.clear(levels={Level.MEMORY})
    assert (await cache.get(key(1))).level is Level.DISK  # type: ignore[union-attr]

    counts = await cache.clear(model="m")
    assert counts == {Level.MEMORY: 1, Level.DISK: 1, Level.REDIS: 1}
    assert await cache.get(key(1)) is None
    await cache.stop()


def test_default_config_is_memory_only() -> None:
    cache = TieredCache.from_config(CacheConfig())
    assert cache is not None and cache.levels == (Level.MEMORY,)
    assert TieredCache.from_config(CacheConfig(memory=None)) is None
