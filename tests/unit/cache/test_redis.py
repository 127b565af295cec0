"""L3 against a real redis-server: TTLs, clearing, and failures that never raise."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from blaze_ai.cache.redis import RedisLevel
from blaze_ai.devtools.net import free_port
from tests.fakes import FakeClock
from tests.redis_server import RedisServer
from tests.unit.cache.helpers import entry, key


def make_level(url: str, clock: FakeClock, *, timeout_s: float = 0.2) -> RedisLevel:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    return RedisLevel(
        url, key_prefix=prefix, timeout_s=timeout_s, retry_interval_s=5.0, clock=clock
    )


@pytest.fixture
async def level(redis_server: RedisServer) -> AsyncIterator[RedisLevel]:
    lv = make_level(redis_server.url, FakeClock(time.time()))
    await lv.start()
    yield lv
    await lv.stop()


async def test_round_trip_with_ttl(level: RedisLevel, redis_server: RedisServer) -> None:
    now = time.time()
    level._clock = FakeClock(now)  # type: ignore[assignment]
    await level.set(key(1), entry(b"answer", expires_at=now + 60))
    found = await level.get(key(1))
    assert found is not None and found.payload == b"answer"
    ttl_ms = redis_server.client().pttl(level.redis_key(key(1)))
    assert 59_000 < ttl_ms <= 60_000  # type: ignore[operator]
    stats = await level.stats()
    assert (stats.hits, stats.stores, stats.errors, stats.up) == (1, 1, 0, True)


async def test_clear_touches_only_its_prefix_and_model(
    level: RedisLevel, redis_server: RedisServer
) -> None:
    far = time.time() + 600
    await level.set(key(1, "a"), entry(model="a", expires_at=far))
    await level.set(key(2, "a"), entry(model="a", expires_at=far))
    await level.set(key(3, "b"), entry(model="b", expires_at=far))
    redis_server.client().set("someone-else", b"keep")
    assert await level.clear("a") == 2
    assert await level.get(key(3, "b")) is not None
    assert await level.clear(None) == 1
    assert redis_server.client().get("someone-else") == b"keep"


async def test_redis_down_is_a_miss_logged_once_then_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(time.time())
    lv = make_level(f"redis://127.0.0.1:{free_port()}/0", clock)  # nothing listens there
    await lv.start()
    caplog.set_level(logging.INFO, logger="blaze_ai.resilience.outage")
    assert await lv.get(key(1)) is None
    await lv.set(key(1), entry(expires_at=clock.now() + 60))
    assert await lv.get(key(1)) is None
    stats = await lv.stats()
    assert (stats.errors, stats.outages, stats.up) == (1, 1, False)  # later calls skipped
    assert [r.message for r in caplog.records] == ["cache_level_down"]
    clock.advance(5.0)
    assert await lv.get(key(1)) is None  # one probe, which fails again
    stats = await lv.stats()
    assert (stats.errors, stats.outages) == (2, 1)
    assert [r.message for r in caplog.records] == ["cache_level_down"]
    await lv.stop()


async def test_comes_back_by_itself_after_a_restart(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(time.time())
    lv = make_level(redis_server.url, clock)
    await lv.start()
    await lv.set(key(1), entry(expires_at=clock.now() + 60))
    caplog.set_level(logging.INFO, logger="blaze_ai.resilience.outage")
    redis_server.kill()
    try:
        assert await lv.get(key(1)) is None
        assert not (await lv.stats()).up
    finally:
        redis_server.start()
    assert await lv.get(key(1)) is None  # still inside the retry interval: skipped
    clock.advance(5.0)
    await lv.set(key(2), entry(expires_at=clock.now() + 60))
    assert await lv.get(key(2)) is not None
    assert (await lv.stats()).up
    assert [r.message for r in caplog.records] == ["cache_level_down", "cache_level_up"]
    await lv.stop()


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(sock.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    sock.close()


async def test_a_hung_redis_costs_at_most_the_timeout(silent_server: int) -> None:
    lv = make_level(f"redis://127.0.0.1:{silent_server}/0", FakeClock(time.time()), timeout_s=0.1)
    await lv.start()
    started = time.perf_counter()
    assert await lv.get(key(1)) is None
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, elapsed
    stats = await lv.stats()
    assert (stats.errors, stats.up) == (1, False)
    started = time.perf_counter()
    await asyncio.gather(*(lv.get(key(n)) for n in range(20)))  # skipped during the outage
    assert time.perf_counter() - started < 0.05
    await lv.stop()
