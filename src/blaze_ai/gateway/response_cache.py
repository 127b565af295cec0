"""The cache step of the gateway: plan, look up, store, replay, record.

:class:`ResponseCache` knows nothing of routing; the gateway calls its steps in order:
:meth:`~ResponseCache.plan` (key, and whether to look up and store) ->
:meth:`~ResponseCache.lookup` (a hit never reaches the router, so cached answers are served
even while no deployment can) -> on a miss, the router's answer goes to
:meth:`~ResponseCache.store`. A streamed request is answered from a hit by
:meth:`~ResponseCache.replay`; a relayed stream is collected by :meth:`~ResponseCache.recording`
and stored once complete. An error, a stream cut short (client gone, engine failure) or an
answer with a choice unfinished is never stored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace

from blaze_ai.cache.codec import TEXT_KIND, decode_text_result, encode_text_result
from blaze_ai.cache.entry import CacheEntry, Level
from blaze_ai.cache.policy import CachePlan, ModelPolicy, is_deterministic, plan_request
from blaze_ai.cache.stats import LevelStats
from blaze_ai.cache.tiered import TieredCache
from blaze_ai.config.schema import Settings
from blaze_ai.resilience.clock import Clock, WallClock
from blaze_ai.streams import StreamCollector, replay
from blaze_ai.types import (
    CacheStatus,
    StreamItem,
    TextRequest,
    TextResult,
)

logger = logging.getLogger(__name__)

HIT_STATUS = {
    Level.MEMORY: CacheStatus.HIT_MEMORY,
    Level.DISK: CacheStatus.HIT_DISK,
    Level.REDIS: CacheStatus.HIT_REDIS,
}


@dataclass(frozen=True, slots=True)
class ResponseCacheStats:
    """The cache's figures: answers per :class:`CacheStatus`, and each level's own."""

    outcomes: dict[str, int]
    levels: list[LevelStats]


class ResponseCache:
    """Serves text requests from a :class:`TieredCache` under per-model policies.

    Args:
        cache: the levels.
        policies: the policy of each served model, by canonical name.
        namespace: the scope of requests that carry no tenant.
        clock: wall-clock time source for entry expiry.
    """

    def __init__(
        self,
        cache: TieredCache,
        policies: Mapping[str, ModelPolicy],
        *,
        namespace: str,
        clock: Clock | None = None,
    ) -> None:
        self._cache = cache
        self._policies = dict(policies)
        self._namespace = namespace
        self._clock = clock or WallClock()
        self._outcomes: Counter[CacheStatus] = Counter()

    @classmethod
    def from_settings(cls, settings: Settings) -> ResponseCache | None:
        """The cache ``settings.cache`` describes; None when it enables no level."""
        cache = TieredCache.from_config(settings.cache)
        if cache is None:
            return None
        ttl_s = settings.cache.ttl_s
        policies = {m.name: ModelPolicy.from_config(m, ttl_s) for m in settings.models}
        return cls(cache, policies, namespace=settings.cache.namespace)

    async def start(self) -> None:
        """Open the levels."""
        await self._cache.start()
        logger.info("cache_ready", extra={"levels": [str(lv) for lv in self._cache.levels]})

    async def stop(self) -> None:
        """Close the levels."""
        await self._cache.stop()

    def plan(self, model: str, req: TextRequest) -> CachePlan | None:
        """How ``req`` (for the served model ``model``) uses the cache: its key, whether it is
        looked up and stored; None when the model has no policy."""
        policy = self._policies.get(model)
        if policy is None:
            return None
        return plan_request(
            req,
            policy,
            deterministic=is_deterministic(req.params),
            model=model,
            namespace=self._namespace,
        )

    async def lookup(self, plan: CachePlan | None) -> TextResult | None:
        """The stored answer of ``plan``, its ``cache_status`` telling the level; None on a miss
        (or when the plan does not look up). A hit is counted."""
        if plan is None or not plan.lookup:
            return None
        found = await self._cache.get(plan.key)
        if found is None or found.entry.kind != TEXT_KIND:
            return None
        try:
            result = decode_text_result(found.entry.payload)
        except ValueError:
            logger.warning("cache_entry_unreadable", extra={"level": str(found.level)})
            return None
        status = HIT_STATUS[found.level]
        self._outcomes[status] += 1
        usage = replace(result.usage, cached_tokens=result.usage.prompt_tokens)
        return replace(result, usage=usage, cache_status=status)

    def count_miss(self, plan: CachePlan | None) -> CacheStatus:
        """Count an answer that did not come from the cache: ``miss`` when it was looked up,
        else ``bypass``; returns that status."""
        status = CacheStatus.MISS if plan is not None and plan.lookup else CacheStatus.BYPASS
        self._outcomes[status] += 1
        return status

    async def store(self, plan: CachePlan | None, result: TextResult | None) -> None:
        """Store ``result`` under ``plan`` when the plan stores and the answer is complete."""
        if plan is None or not plan.store or result is None:
            return
        expires_at = self._clock.now() + plan.ttl_s
        entry = CacheEntry(TEXT_KIND, plan.key.model, encode_text_result(result), expires_at)
        await self._cache.set(plan.key, entry)

    @staticmethod
    def replay(hit: TextResult) -> Iterator[StreamItem]:
        """A stored answer as stream items (see :func:`blaze_ai.streams.replay`)."""
        return replay(hit)

    @staticmethod
    def recording(plan: CachePlan | None, n: int) -> StreamCollector | None:
        """A collector for a relayed stream of ``n`` choices whose complete answer
        :meth:`store` will keep; None when the plan stores nothing."""
        if plan is None or not plan.store:
            return None
        return StreamCollector(n)

    async def clear(
        self, model: str | None = None, levels: Collection[str] | None = None
    ) -> dict[str, int | None]:
        """Drop the entries of the served model ``model`` (or all) from ``levels`` (names, or
        all); return the count per level, None where a level failed."""
        wanted = None if levels is None else {Level(name) for name in levels}
        counts = await self._cache.clear(model, wanted)
        logger.info("cache_cleared", extra={"model": model, "counts": dict(counts)})
        return {str(level): count for level, count in counts.items()}

    async def stats(self) -> ResponseCacheStats:
        """Answers per cache status since start, and each level's figures."""
        outcomes = {str(status): self._outcomes[status] for status in CacheStatus}
        return ResponseCacheStats(outcomes, await self._cache.stats())
