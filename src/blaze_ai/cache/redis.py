"""Level 3: Redis through ``redis.asyncio``, shared by every Blaze process that points at it.

Redis trouble never fails a request: each call is bounded by ``timeout_s`` (socket timeouts and
an ``asyncio`` timeout around the whole call), a failure counts as a miss or a skipped write,
the first failure of an outage is logged once, and Redis is then skipped for
``retry_interval_s`` before one call probes it again (the client reconnects by itself).

Keys are ``<prefix><model tag>:<digest>``, the model tag being the first 16 hex digits of the
model name's SHA-256, so one model's entries are found with ``SCAN MATCH`` whatever its name.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from blaze_ai.cache.entry import CacheEntry, CacheKey, Level
from blaze_ai.cache.stats import EntryCounters, LevelStats
from blaze_ai.resilience.clock import Clock
from blaze_ai.resilience.outage import OutageTracker

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
"""What a failing Redis raises: refused or reset connections, timeouts, server errors."""

CLEAR_TIMEOUT_S = 30.0
"""Bound on clearing (a ``SCAN`` over the keyspace); an admin call, not a request's."""

SCAN_COUNT = 1000
"""Keys asked for per ``SCAN`` step and deleted per ``UNLINK``."""


def model_tag(model: str) -> str:
    """16 hex digits naming ``model`` inside Redis keys (no glob characters possible)."""
    return hashlib.sha256(model.encode()).hexdigest()[:16]


class RedisLevel:
    """Entries as Redis strings with a time to live (``SET ... PX``).

    Args:
        url: ``redis://host:port/db`` (see ``redis.asyncio.Redis.from_url``).
        key_prefix: every key starts with it; must not hold glob characters.
        timeout_s: bound on one call, in seconds.
        retry_interval_s: seconds Redis is skipped after a failure.
        clock: wall-clock time source (expiry, and pacing retries).
    """

    level = Level.REDIS

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str,
        timeout_s: float,
        retry_interval_s: float,
        clock: Clock,
    ) -> None:
        self.url = url
        self.key_prefix = key_prefix
        self.timeout_s = timeout_s
        self._clock = clock
        self._tracker = OutageTracker("redis", retry_interval_s, clock)
        self._client: Redis | None = None
        self._counts = EntryCounters()

    async def start(self) -> None:
        """Create the client; it connects on first use, so a down Redis does not stop Blaze."""
        self._client = Redis.from_url(
            self.url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would multiply the bounded latency
        )

    async def stop(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aclose()
            except REDIS_ERRORS as exc:
                self._tracker.failure(exc)

    async def get(self, key: CacheKey) -> CacheEntry | None:
        """The live entry under ``key``, or None (also when Redis is down or slow)."""
        redis_key = self.redis_key(key)
        data = await self._call(lambda client: client.get(redis_key), self.timeout_s)
        return self._counts.accept(data, self._clock.now())

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        """``SET key entry PX ttl``; skipped when Redis is down or slow."""
        ttl_ms = int((entry.expires_at - self._clock.now()) * 1000)
        if ttl_ms <= 0:
            return
        redis_key, data = self.redis_key(key), entry.encode()
        stored = await self._call(lambda c: c.set(redis_key, data, px=ttl_ms), self.timeout_s)
        if stored:
            self._counts.stores += 1

    async def clear(self, model: str | None) -> int | None:
        """``UNLINK`` every key of this prefix (or of ``model``); None if Redis failed."""
        pattern = self.key_prefix + (f"{model_tag(model)}:*" if model is not None else "*")
        count = await self._call(lambda client: _unlink_matching(client, pattern), CLEAR_TIMEOUT_S)
        return count if isinstance(count, int) else None

    async def stats(self) -> LevelStats:
        """Counters and whether Redis is up (keys are not counted: that would scan Redis)."""
        return self._counts.stats(self.level, self._tracker)

    def redis_key(self, key: CacheKey) -> str:
        """The Redis key of ``key``."""
        return f"{self.key_prefix}{model_tag(key.model)}:{key.digest}"

    async def _call(self, fn: Callable[[Redis], Awaitable[Any]], timeout_s: float) -> Any:
        """``await fn(client)`` within ``timeout_s``; None when skipped or failing."""
        client = self._client
        if client is None or not self._tracker.allow():
            return None
        try:
            async with asyncio.timeout(timeout_s):
                result = await fn(client)
        except REDIS_ERRORS as exc:
            self._tracker.failure(exc)
            return None
        self._tracker.success()
        return result


async def _unlink_matching(client: Redis, pattern: str) -> int:
    """Delete every key matching ``pattern`` in batches; return how many were deleted."""
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted
