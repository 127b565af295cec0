"""L1: LRU bounded by estimated bytes and by expiry (fake clock, no sleeping)."""

from __future__ import annotations

from blaze_ai.cache.memory import MemoryLevel, entry_size
from tests.fakes import FakeClock
from tests.unit.cache.helpers import entry, key


async def test_round_trip_and_counts() -> None:
    level = MemoryLevel(1 << 20, FakeClock())
    assert await level.get(key(1)) is None
    await level.set(key(1), entry(b"hello"))
    found = await level.get(key(1))
    assert found is not None and found.payload == b"hello"
    stats = await level.stats()
    assert (stats.hits, stats.misses, stats.stores, stats.entries) == (1, 1, 1, 1)
    assert stats.size_bytes == entry_size(key(1), entry(b"hello"))


async def test_evicts_least_recently_used_to_stay_under_max_bytes() -> None:
    one = entry_size(key(1), entry())
    level = MemoryLevel(3 * one, FakeClock())
    for n in (1, 2, 3):
        await level.set(key(n), entry())
    assert await level.get(key(1)) is not None  # 1 is now the most recently used
    await level.set(key(4), entry())
    assert await level.get(key(2)) is None  # the least recently used went
    for n in (1, 3, 4):
        assert await level.get(key(n)) is not None
    stats = await level.stats()
    assert stats.evictions == 1
    assert stats.size_bytes is not None and stats.size_bytes <= 3 * one


async def test_larger_entries_evict_several() -> None:
    one = entry_size(key(1), entry())
    level = MemoryLevel(3 * one, FakeClock())
    for n in (1, 2, 3):
        await level.set(key(n), entry())
    await level.set(key(9), entry(b"y" * (one + 100)))
    assert (await level.stats()).evictions == 2
    assert await level.get(key(9)) is not None


async def test_entry_larger_than_the_bound_is_not_stored() -> None:
    level = MemoryLevel(1024, FakeClock())
    await level.set(key(1), entry(b"z" * 2000))
    assert await level.get(key(1)) is None
    assert (await level.stats()).stores == 0


async def test_expired_entries_are_dropped_on_lookup() -> None:
    clock = FakeClock(100.0)
    level = MemoryLevel(1 << 20, clock)
    await level.set(key(1), entry(expires_at=160.0))
    clock.advance(59.9)
    assert await level.get(key(1)) is not None
    clock.advance(0.1)
    assert await level.get(key(1)) is None
    stats = await level.stats()
    assert (stats.expirations, stats.entries, stats.size_bytes) == (1, 0, 0)


async def test_replacing_an_entry_keeps_the_byte_count_right() -> None:
    level = MemoryLevel(1 << 20, FakeClock())
    await level.set(key(1), entry(b"a" * 10))
    await level.set(key(1), entry(b"b" * 500))
    assert (await level.stats()).size_bytes == entry_size(key(1), entry(b"b" * 500))


async def test_clear_one_model_or_all() -> None:
    level = MemoryLevel(1 << 20, FakeClock())
    await level.set(key(1, "a"), entry(model="a"))
    await level.set(key(2, "a"), entry(model="a"))
    await level.set(key(3, "b"), entry(model="b"))
    assert await level.clear("a") == 2
    assert await level.get(key(3, "b")) is not None
    assert await level.clear(None) == 1
    assert (await level.stats()).size_bytes == 0
