"""Small builders shared by the cache tests."""

from __future__ import annotations

from blaze_ai.cache.entry import CacheEntry, CacheKey


def key(n: int, model: str = "m") -> CacheKey:
    return CacheKey(model, f"{n:064x}")


def entry(
    payload: bytes = b"x" * 100, *, model: str = "m", expires_at: float = 1000.0
) -> CacheEntry:
    return CacheEntry("text", model, payload, expires_at)
