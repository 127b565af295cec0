"""Issue 12, limits in Redis (a real ``redis-server``): a list of prompts is one request.

Review of issue 12: the prompts of a ``/v1/completions`` list called the gateway together and
each took its own admission while the first waited on Redis; only one was settled, and the
other ``max_parallel`` leases stayed for ``parallel_lease_s``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from blaze_ai.config.tenancy import LimitsConfig
from blaze_ai.tenancy.usage import summarize
from tests.api.keyed import keyed_app, keyed_client, keyed_settings, new_key
from tests.redis_server import RedisServer


@pytest.fixture(scope="module")
async def app(
    tiny_config: Path, tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer
) -> AsyncIterator[FastAPI]:
    settings = keyed_settings(tiny_config, tmp_path_factory.mktemp("redis-limits"))
    limits = LimitsConfig(window_s=60, redis_url=redis_server.url)
    async with keyed_app(settings.model_copy(update={"limits": limits})) as started:
        yield started


async def test_a_list_of_prompts_takes_one_slot_and_gives_it_back(
    app: FastAPI, redis_server: RedisServer
) -> None:
    key = await new_key(app, "listers", max_parallel=1, rpm=100)
    body = {"model": "tiny", "prompt": ["one", "two", "three"], "max_tokens": 3}
    async with keyed_client(app, key["key"]) as client:
        for _ in range(4):
            response = await client.post("/v1/completions", json=body)
            assert response.status_code == 200, response.text
            assert int(response.headers["x-ratelimit-remaining-requests"]) >= 0
    await app.state.tenancy.wait_settled()
    leases = [k for k in redis_server.client().scan_iter("*parallel*") if b"key" in k]
    assert all(redis_server.client().zcard(k) == 0 for k in leases), leases
    (row, *_) = await _count_requests(app, key["key_id"])
    assert row == 4  # one usage record per HTTP request, not per prompt


async def _count_requests(app: FastAPI, key_id: str) -> list[int]:
    await app.state.tenancy.usage.flush()
    rows = summarize(app.state.tenancy.database.engine, key_id=key_id)
    return [int(r["requests"]) for r in rows]
