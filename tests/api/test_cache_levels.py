"""Disk and Redis levels across real processes: tenants, sharing, restarts, Redis outages.

Each server is ``blaze serve`` on the tiny model with its own config; they share the session's
real ``redis-server``.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from blaze_ai.devtools.server import BlazeServer, start_server
from tests.redis_server import RedisServer

CHAT = "/v1/chat/completions"


def write_config(folder: Path, model_dir: Path, cache: str) -> Path:
    config = folder / "blaze.yaml"
    config.write_text(
        "models:\n"
        "  - name: tiny\n"
        "    deployments:\n"
        f"      - {{engine: llm, model: '{model_dir}'}}\n"
        f"cache:\n{cache}"
    )
    return config


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
def servers(tmp_path: Path) -> Iterator[list[BlazeServer]]:
    started: list[BlazeServer] = []
    yield started
    for server in started:
        server.stop()


def serve(folder: Path, model_dir: Path, cache: str, started: list[BlazeServer]) -> BlazeServer:
    folder.mkdir(parents=True, exist_ok=True)
    config = write_config(folder, model_dir, cache)
    server = start_server(folder / "server.log", config=config, ready_timeout_s=120)
    started.append(server)
    return server


def test_tenants_never_share_and_processes_share_through_redis_and_disk(
    tmp_path: Path, tiny_llama_dir: Path, redis_server: RedisServer, servers: list[BlazeServer]
) -> None:
    prefix = f"blaze-test-{uuid.uuid4().hex[:8]}:"
    team_a = cache_section("team-a", redis_server, prefix, tmp_path / "disk-a")
    a = serve(tmp_path / "a", tiny_llama_dir, team_a, servers)
    b = serve(
        tmp_path / "b",
        tiny_llama_dir,
        cache_section("team-b", redis_server, prefix, tmp_path / "disk-b"),
        servers,
    )
    a2 = serve(
        tmp_path / "a2",
        tiny_llama_dir,
        cache_section("team-a", redis_server, prefix, tmp_path / "disk-a2"),
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
    a = serve(tmp_path / "a-again", tiny_llama_dir, team_a, servers)
    assert cache_of(a, question) == "hit-disk"
    assert cache_of(a, question) == "hit-memory"

    cleared = httpx.post(f"{a.base_url}/admin/cache/clear", json={"model": "tiny"}).json()
    assert cleared["cleared"] == {"memory": 1, "disk": 1, "redis": 2}  # team-a's and team-b's
    assert cache_of(a2, question) == "hit-memory"  # another process's memory is its own
    assert cache_of(b, body("Shared question", max_tokens=4)) == "miss"


def test_killing_redis_during_200_requests_fails_none_and_l3_comes_back(
    tmp_path: Path, tiny_llama_dir: Path, redis_server: RedisServer, servers: list[BlazeServer]
) -> None:
    prefix = f"blaze-kill-{uuid.uuid4().hex[:8]}:"
    server = serve(
        tmp_path / "k",
        tiny_llama_dir,
        cache_section("default", redis_server, prefix, None),
        servers,
    )
    done = 0
    lock = threading.Lock()
    killed, restarted = threading.Event(), threading.Event()
    statuses: list[int] = []
    sources: list[str] = []

    def one(client: httpx.Client, n: int) -> None:
        nonlocal done
        response = client.post(CHAT, json=body(f"question {n % 150}"))  # 50 repeats: L1 hits
        with lock:
            statuses.append(response.status_code)
            sources.append(response.headers.get("x-blaze-cache", ""))
            done += 1
            count = done
        if count == 60:
            redis_server.kill()
            killed.set()
        elif count == 140:
            redis_server.start()
            restarted.set()

    try:
        with (
            httpx.Client(base_url=server.base_url, timeout=60) as client,
            ThreadPoolExecutor(max_workers=4) as pool,
        ):
            list(pool.map(lambda n: one(client, n), range(200)))
    finally:
        if redis_server.process is None:
            redis_server.start()
    assert killed.is_set() and restarted.is_set()
    assert statuses == [200] * 200
    assert {"miss", "hit-memory"} <= set(sources)

    # L3 is back without restarting Blaze: a new answer is written to the restarted Redis
    # (empty: it has no persistence) and read back from it once memory is cleared.
    import time

    fresh = body(f"after the outage {uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + 10
    while True:  # Redis is retried 0.5 s after the last failure
        cache_of(server, {**fresh, "cache": {"no-cache": True}})
        if list(redis_server.client().scan_iter(match=f"{prefix}*")):
            break
        assert time.monotonic() < deadline, "Blaze never wrote to Redis again"
        time.sleep(0.2)
    httpx.post(f"{server.base_url}/admin/cache/clear", json={"levels": ["memory"]})
    assert cache_of(server, fresh) == "hit-redis"
    figures = httpx.get(f"{server.base_url}/admin/cache").json()
    redis_level = next(lv for lv in figures["levels"] if lv["level"] == "redis")
    assert redis_level["up"] is True and redis_level["outages"] == 1
    assert redis_level["errors"] >= 1
    log = server.log()
    assert log.count("cache_level_down") == 1, log
    assert log.count("cache_level_up") == 1, log
