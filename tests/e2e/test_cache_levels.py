"""Disk and Redis levels across real processes: tenants, sharing, restarts, Redis outages.

Each server is ``blaze serve`` on the tiny model with its own config (``tests/e2e/servers.py``);
they share the session's real ``redis-server``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from blaze_ai.devtools.server import BlazeServer, wait_until_ready
from tests.e2e.servers import READY_TIMEOUT_S, launch, tiny_config_text
from tests.redis_server import RedisServer

CHAT = "/v1/chat/completions"


def cache_section(namespace: str, redis: RedisServer, prefix: str, disk: Path | None) -> str:
    section = (
        f"  namespace: {namespace}\n"
        f"  redis: {{url: '{redis.url}', key_prefix: '{prefix}', timeout_s: 0.2,"
        " retry_interval_s: 0.5}\n"
    )
    if disk is not None:
        section += f"  disk: {{directory: '{disk}'}}\n"
    return section


def body(content: str, **fields: Any) -> dict[str, Any]:
    return {
        "model": "tiny",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 3,
        **fields,
    }


def cache_of(server: BlazeServer, payload: dict[str, Any]) -> str:
    response = httpx.post(f"{server.base_url}{CHAT}", json=payload, timeout=60)
    assert response.status_code == 200, response.text
    return response.headers["x-blaze-cache"]


@pytest.fixture
def servers() -> Iterator[list[BlazeServer]]:
    started: list[BlazeServer] = []
    yield started
    for server in started:
        server.stop()


def serve(
    model_dir: Path, caches: dict[Path, str], started: list[BlazeServer]
) -> list[BlazeServer]:
    """Start one server per ``folder: cache section``, side by side; return them when ready."""
    launched = [
        launch(folder, tiny_config_text(model_dir, extra=f"cache:\n{cache}"))
        for folder, cache in caches.items()
    ]
    started += launched
    wait_until_ready(launched, READY_TIMEOUT_S)
    return launched


def test_tenants_never_share_and_processes_share_through_redis_and_disk(
    tmp_path: Path, tiny_llama_dir: Path, redis_server: RedisServer, servers: list[BlazeServer]
) -> None:
    prefix = f"blaze-test-{uuid.uuid4().hex[:8]}:"
    team_a = cache_section("team-a", redis_server, prefix, tmp_path / "disk-a")
    a, b, a2 = serve(
        tiny_llama_dir,
        {
            tmp_path / "a": team_a,
            tmp_path / "b": cache_section("team-b", redis_server, prefix, tmp_path / "disk-b"),
            tmp_path / "a2": cache_section("team-a", redis_server, prefix, tmp_path / "disk-a2"),
        },
        servers,
    )
    question = body("Shared question")
    assert cache_of(a, question) == "miss"
    assert cache_of(b, question) == "miss"  # same Redis, other tenant: never shared
    assert cache_of(b, question) == "hit-memory"
    assert cache_of(a2, question) == "hit-redis"  # same tenant, another process
    assert cache_of(a2, question) == "hit-memory"  # promoted

    a.stop()  # the disk level survives a restart; memory does not
    servers.remove(a)
    [a] = serve(tiny_llama_dir, {tmp_path / "a-again": team_a}, servers)
    assert cache_of(a, question) == "hit-disk"
    assert cache_of(a, question) == "hit-memory"

    cleared = httpx.post(f"{a.base_url}/admin/cache/clear", json={"model": "tiny"}).json()
    assert cleared["cleared"] == {"memory": 1, "disk": 1, "redis": 2}  # team-a's and team-b's
    assert cache_of(a2, question) == "hit-memory"  # another process's memory is its own
    assert cache_of(b, body("Shared question", max_tokens=4)) == "miss"


class Burst:
    """200 requests from 4 threads; Redis is killed after the 60th answer and started again
    after the 140th."""

    def __init__(self, server: BlazeServer, redis: RedisServer) -> None:
        self.server, self.redis = server, redis
        self.done = 0
        self.lock = threading.Lock()
        self.killed, self.restarted = threading.Event(), threading.Event()
        self.statuses: list[int] = []
        self.sources: list[str] = []

    def one(self, client: httpx.Client, n: int) -> None:
        response = client.post(CHAT, json=body(f"question {n % 150}"))  # 50 repeats: L1 hits
        with self.lock:
            self.statuses.append(response.status_code)
            self.sources.append(response.headers.get("x-blaze-cache", ""))
            self.done += 1
            count = self.done
        if count == 60:
            self.redis.kill()
            self.killed.set()
        elif count == 140:
            self.redis.start()
            self.restarted.set()

    def run(self) -> None:
        try:
            with (
                httpx.Client(base_url=self.server.base_url, timeout=60) as client,
                ThreadPoolExecutor(max_workers=4) as pool,
            ):
                list(pool.map(lambda n: self.one(client, n), range(200)))
        finally:
            if self.redis.process is None:
                self.redis.start()


def wait_for_a_redis_write(server: BlazeServer, redis: RedisServer, prefix: str) -> dict[str, Any]:
    """Send new answers (past the cache lookup) until one is written to Redis; return its body.

    Redis is retried 0.5 s after the last failure."""
    fresh = body(f"after the outage {uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + 10
    while True:
        cache_of(server, {**fresh, "cache": {"no-cache": True}})
        if list(redis.client().scan_iter(match=f"{prefix}*")):
            return fresh
        assert time.monotonic() < deadline, "Blaze never wrote to Redis again"
        time.sleep(0.05)


def test_killing_redis_during_200_requests_fails_none_and_l3_comes_back(
    tmp_path: Path, tiny_llama_dir: Path, redis_server: RedisServer, servers: list[BlazeServer]
) -> None:
    prefix = f"blaze-kill-{uuid.uuid4().hex[:8]}:"
    cache = cache_section("default", redis_server, prefix, None)
    [server] = serve(tiny_llama_dir, {tmp_path / "k": cache}, servers)
    burst = Burst(server, redis_server)
    burst.run()
    assert burst.killed.is_set() and burst.restarted.is_set()
    assert burst.statuses == [200] * 200
    assert {"miss", "hit-memory"} <= set(burst.sources)

    # L3 is back without restarting Blaze: a new answer is written to the restarted Redis
    # (empty: it has no persistence) and read back from it once memory is cleared.
    fresh = wait_for_a_redis_write(server, redis_server, prefix)
    httpx.post(f"{server.base_url}/admin/cache/clear", json={"levels": ["memory"]})
    assert cache_of(server, fresh) == "hit-redis"
    figures = httpx.get(f"{server.base_url}/admin/cache").json()
    redis_level = next(lv for lv in figures["levels"] if lv["level"] == "redis")
    assert redis_level["up"] is True and redis_level["outages"] == 1
    assert redis_level["errors"] >= 1
    log = server.log()
    assert log.count("cache_level_down") == 1, log
    assert log.count("cache_level_up") == 1, log
