"""Issue 12: with the key database stopped (a real PostgreSQL), requests with keys the process
has seen keep being served, the usage queue stays bounded (drops counted), an unseen key and
the admin API get a clean 503, and once the database is back the queued usage is written."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from blaze_ai.config.tenancy import UsageConfig
from tests.api.keyed import admin, keyed_app, keyed_client, keyed_settings, new_key
from tests.postgres_server import PostgresServer

QUEUE_MAX = 20


async def test_known_keys_are_served_while_the_database_is_down(
    tiny_config: Path, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    settings = keyed_settings(tiny_config, tmp_path, database_url=postgres_server.new_database())
    usage = UsageConfig(queue_max=QUEUE_MAX, flush_interval_s=0.05)
    settings = settings.model_copy(update={"usage": usage})
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 2}
    async with keyed_app(settings) as app:
        key = await new_key(app, "steady")
        writer = app.state.tenancy.usage
        async with keyed_client(app, key["key"]) as client:
            assert (await client.post("/v1/completions", json=body)).status_code == 200
            await writer.flush()
            postgres_server.stop()
            try:
                await asyncio.sleep(0.3)  # past auth.cache_ttl_s: every lookup now fails
                statuses = [
                    (await client.post("/v1/completions", json=body)).status_code
                    for _ in range(2 * QUEUE_MAX)
                ]
                assert statuses == [200] * (2 * QUEUE_MAX)
                assert writer.pending <= QUEUE_MAX and writer.dropped >= QUEUE_MAX
                async with keyed_client(app, "sk-blz-" + "B" * 43) as stranger:
                    unseen = await stranger.get("/v1/models")
                assert unseen.status_code == 503 and unseen.headers["retry-after"] == "1"
                async with admin(app) as operator:
                    listing = await operator.get("/admin/keys")
                assert listing.status_code == 503
                assert listing.json()["error"]["type"] == "service_unavailable"
            finally:
                postgres_server.start()
            written = writer.written
            deadline = time.monotonic() + 20
            while writer.pending and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert writer.pending == 0 and writer.written > written


@pytest.fixture(autouse=True)
def _quiet_psycopg(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("ERROR", logger="psycopg")
