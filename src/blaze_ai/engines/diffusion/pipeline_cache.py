"""A least-recently-used cache of loaded diffusion pipelines, bounded by a memory budget.

Several image models may be configured while only some fit in memory at once. Each engine asks
the cache for its pipeline before every batch; a miss loads it (blocking: call from a worker
thread), and when the loaded pipelines together exceed the budget the least recently used ones
are dropped until they fit again (the newest is always kept, even alone over the budget). A
dropped pipeline is freed once the batch still using it, if any, ends. Loads, hits and evictions
are counted and logged (``pipeline_loaded`` with ``load_s``, ``pipeline_evicted``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineCacheStats:
    """Counters of a :class:`PipelineCache` since it was made.

    Attributes:
        loads: misses that loaded a pipeline.
        hits: requests served by a pipeline already loaded.
        evictions: pipelines dropped to stay within the budget.
        cached_bytes: bytes held now.
        keys: the keys held now, least recently used first.
    """

    loads: int
    hits: int
    evictions: int
    cached_bytes: int
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Any
    size_bytes: int


class PipelineCache:
    """Loaded pipelines by key (a deployment name), least recently used first out.

    Thread-safe: loads of different keys run concurrently, two loads of one key never do.

    Args:
        max_bytes: the memory budget, in bytes (0: keep only the pipeline used last).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self._loads = self._hits = self._evictions = 0

    def get(self, key: str, load: Callable[[], Any], size_of: Callable[[Any], int]) -> Any:
        """The pipeline of ``key``, loading it with ``load()`` on a miss (blocking).

        Args:
            key: the cache key.
            load: builds the pipeline; its exceptions propagate and nothing is cached.
            size_of: the pipeline's size in bytes.
        """
        with self._lock:
            hit = self._touch(key)
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        if hit is not None:
            return hit
        with key_lock:
            with self._lock:
                hit = self._touch(key)  # another thread loaded it while this one waited
            if hit is not None:
                return hit
            started = time.perf_counter()
            value = load()
            entry = _Entry(value, size_of(value))
            with self._lock:
                self._loads += 1
                self._entries[key] = entry
                self._evict_beyond_budget(keep=key)
                cached = sum(e.size_bytes for e in self._entries.values())
        logger.info(
            "pipeline_loaded",
            extra={
                "key": key,
                "load_s": round(time.perf_counter() - started, 2),
                "bytes": entry.size_bytes,
                "cached_bytes": cached,
            },
        )
        return value

    def drop(self, key: str) -> None:
        """Forget the pipeline of ``key`` (when its engine stops)."""
        with self._lock:
            self._entries.pop(key, None)

    def stats(self) -> PipelineCacheStats:
        """The counters and contents now."""
        with self._lock:
            return PipelineCacheStats(
                loads=self._loads,
                hits=self._hits,
                evictions=self._evictions,
                cached_bytes=sum(e.size_bytes for e in self._entries.values()),
                keys=tuple(self._entries),
            )

    def _touch(self, key: str) -> Any:
        """The cached value (marked most recently used) or None; caller holds the lock."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        self._hits += 1
        return entry.value

    def _evict_beyond_budget(self, keep: str) -> None:
        """Drop least recently used entries until within budget; caller holds the lock."""
        total = sum(e.size_bytes for e in self._entries.values())
        for key in list(self._entries):
            if total <= self.max_bytes:
                return
            if key == keep:
                continue
            entry = self._entries.pop(key)
            total -= entry.size_bytes
            self._evictions += 1
            logger.info(
                "pipeline_evicted",
                extra={"key": key, "bytes": entry.size_bytes, "reason": "memory_budget"},
            )
        if total > self.max_bytes:
            logger.warning(
                "pipeline_over_budget",
                extra={"key": keep, "bytes": total, "max_bytes": self.max_bytes},
            )
