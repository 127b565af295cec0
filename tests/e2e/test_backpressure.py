"""Backpressure over HTTP: a burst beyond the engine's queue gets 429s, never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from blaze_ai.devtools.server import BlazeServer
from tests.e2e.servers import start, tiny_config_text


@pytest.fixture(scope="module")
def small_queue_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path
) -> Iterator[BlazeServer]:
    config = tiny_config_text(tiny_llama_dir, ", max_batch_size: 2, max_queue: 8")
    server = start(tmp_path_factory.mktemp("small-queue"), config)
    yield server
    server.stop()


async def test_40_requests_against_max_queue_8(small_queue_server: BlazeServer) -> None:
    # greedy (the tiny model never ends on its own) and past the cache: every answer is 200 tokens
    body = {
        "model": "tiny",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 200,
        "temperature": 0,
        "cache": {"no-cache": True, "no-store": True},
    }
    async with httpx.AsyncClient(base_url=small_queue_server.base_url, timeout=60) as client:
        responses = await asyncio.wait_for(
            asyncio.gather(*(client.post("/v1/chat/completions", json=body) for _ in range(40))),
            timeout=60,
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 429}, statuses
        refused = [r for r in responses if r.status_code == 429]
        assert len(refused) >= 20, statuses  # at most 2 running + 8 queued at a time
        assert statuses.count(200) >= 10
        for r in refused:
            assert int(r.headers["retry-after"]) >= 1
            error = r.json()["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "server_overloaded")
        for r in responses:
            if r.status_code == 200:
                assert r.json()["usage"]["completion_tokens"] == 200
        health = await client.get("/health")
        assert health.status_code == 200
        again = await client.post("/v1/chat/completions", json={**body, "max_tokens": 3})
        assert again.status_code == 200
