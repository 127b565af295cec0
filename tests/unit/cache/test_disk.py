"""L2: diskcache in a folder; survives a reopen, expires, clears by model, stays bounded."""

from __future__ import annotations

from pathlib import Path

from blaze_ai.cache.disk import DiskLevel
from blaze_ai.cache.tiered import TieredCache
from tests.fakes import FakeClock
from tests.unit.cache.helpers import entry, key


async def open_level(folder: Path, clock: FakeClock, max_bytes: int = 1 << 30) -> DiskLevel:
    level = DiskLevel(folder, max_bytes, clock)
    await level.start()
    return level


async def test_round_trip_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    level = await open_level(tmp_path, clock)
    await level.set(key(1), entry(b"payload", expires_at=2000.0))
    await level.stop()
    reopened = await open_level(tmp_path, clock)
    found = await reopened.get(key(1))
    assert found is not None and found.payload == b"payload" and found.expires_at == 2000.0
    stats = await reopened.stats()
    assert (stats.entries, stats.hits) == (1, 1)
    await reopened.stop()


async def test_expired_entry_is_a_miss(tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    level = await open_level(tmp_path, clock)
    await level.set(key(1), entry(expires_at=1010.0))
    clock.advance(10.0)
    assert await level.get(key(1)) is None
    assert (await level.stats()).expirations == 1
    await level.set(key(2), entry(expires_at=1005.0))  # already expired: not written
    assert (await level.stats()).stores == 1
    await level.stop()


async def test_clear_by_model_uses_tags(tmp_path: Path) -> None:
    level = await open_level(tmp_path, FakeClock(0.0))
    await level.set(key(1, "a"), entry(model="a"))
    await level.set(key(2, "b"), entry(model="b"))
    assert await level.clear("a") == 1
    assert await level.get(key(1, "a")) is None
    assert await level.get(key(2, "b")) is not None
    assert await level.clear(None) == 1
    await level.stop()


async def test_size_is_bounded(tmp_path: Path) -> None:
    level = await open_level(tmp_path, FakeClock(0.0), max_bytes=1 << 20)
    for n in range(40):
        await level.set(key(n), entry(b"x" * 100_000))  # 4 MB offered to a 1 MiB folder
    stats = await level.stats()
    assert stats.size_bytes is not None and stats.size_bytes <= 1.5 * (1 << 20)
    assert await level.get(key(39)) is not None
    await level.stop()


async def test_unusable_folder_leaves_the_other_levels_serving(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    from blaze_ai.cache.memory import MemoryLevel

    clock = FakeClock(0.0)
    cache = TieredCache([MemoryLevel(1 << 20, clock), DiskLevel(blocker / "sub", 1 << 20, clock)])
    await cache.start()
    assert [str(level) for level in cache.levels] == ["memory"]
    await cache.set(key(1), entry())
    assert await cache.get(key(1)) is not None
    await cache.stop()
