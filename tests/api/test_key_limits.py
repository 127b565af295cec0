"""Issue 12: per-key limits through the real app and the tiny engine (in-process limits).

- ``tpm`` 1000 with requests of about 100 tokens: about 10 pass, then 429 with Retry-After and
  OpenAI's ``x-ratelimit-*`` headers; after the window rolls over requests pass again;
- rpm and tpm windows do not reset each other;
- 50 concurrent requests against ``max_parallel`` 2: never more than 2 at the engine;
- the response cache is per team; a cache hit counts a request but no completion tokens;
- a stream the client leaves is charged the tokens it streamed (usage record, status 499).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from blaze_ai.gateway import Deployment
from blaze_ai.tenancy import tables
from tests.api.hangup import Exchange, hang_up
from tests.api.keyed import WINDOW_S, keyed_app, keyed_client, keyed_settings, new_key

PROMPT = "w" * 50
"""50 tokens for the tiny model's tokenizer (one per character), 13 by the admission estimate
(4 characters per token): with ``max_tokens`` 50 a request reserves 63 and uses up to 100."""
HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


@pytest.fixture(scope="module")
async def app(
    tiny_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    settings = keyed_settings(tiny_config, tmp_path_factory.mktemp("limits"))
    async with keyed_app(settings) as started:
        yield started


def _completion(max_tokens: int = 50, **fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "prompt": PROMPT, "max_tokens": max_tokens, **fields}


def _reset_s(value: str) -> float:
    """Seconds of an OpenAI reset duration (``12ms``, ``1.5s``, ``1m0s``)."""
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(ms|h|m|s)", value):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


async def _wait_out(response: httpx.Response, kind: str = "tokens") -> None:
    """Sleep until the window of the response's ``x-ratelimit-reset-<kind>`` has rolled over."""
    await asyncio.sleep(_reset_s(response.headers[f"x-ratelimit-reset-{kind}"]) + 0.05)


async def _early_in_a_window(
    client: httpx.AsyncClient, body: dict[str, Any], kind: str = "tokens"
) -> httpx.Response:
    """Send ``body``; when its window has less than half left, wait it out and send it again
    (so what follows all falls into one window). The answer counted in the current window."""
    response = await client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    if _reset_s(response.headers[f"x-ratelimit-reset-{kind}"]) < WINDOW_S / 2:
        await _wait_out(response, kind)
        response = await client.post("/v1/completions", json=body)
    return response


async def test_tpm_1000_lets_about_ten_requests_of_100_tokens_through(app: FastAPI) -> None:
    key = await new_key(app, "tpm-team", tpm=1000)
    async with keyed_client(app, key["key"]) as client:
        await _early_in_a_window(client, _completion())
        passed = 1
        for _ in range(20):
            response = await client.post("/v1/completions", json=_completion())
            if response.status_code != 200:
                break
            assert all(h in response.headers for h in HEADERS[3:]), response.headers
            passed += 1
        assert response.status_code == 429, response.text
        assert 7 <= passed <= 12, passed
        error = response.json()["error"]
        assert error["type"] == "rate_limit_error" and "token" in error["message"]
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert all(h in response.headers for h in HEADERS[3:])
        await _wait_out(response)
        assert (await client.post("/v1/completions", json=_completion())).status_code == 200


async def test_rpm_and_tpm_windows_are_independent(app: FastAPI) -> None:
    key = await new_key(app, "rpm-team", rpm=3, tpm=100_000)
    async with keyed_client(app, key["key"]) as client:
        response = await _early_in_a_window(client, _completion(max_tokens=2), "requests")
        used = 3 - int(response.headers["x-ratelimit-remaining-requests"])
        for _ in range(3 - used):
            response = await client.post("/v1/completions", json=_completion(max_tokens=2))
            assert response.status_code == 200
        assert int(response.headers["x-ratelimit-remaining-requests"]) == 0
        refused = await client.post("/v1/completions", json=_completion(max_tokens=2))
        assert refused.status_code == 429 and "request" in refused.json()["error"]["message"]
        tokens_left = int(refused.headers["x-ratelimit-remaining-tokens"])
        assert tokens_left < 100_000  # the three answers' tokens are counted
        again = await client.post("/v1/completions", json=_completion(max_tokens=2))
        assert again.status_code == 429
        # a refusal takes no tokens (a window rolling over meanwhile can only give some back)
        assert int(again.headers["x-ratelimit-remaining-tokens"]) >= tokens_left


def _deployment(app: FastAPI) -> Deployment:
    (found,) = app.state.gateway.resolve("tiny").deployments
    assert isinstance(found, Deployment)
    return found


async def test_max_parallel_2_holds_under_50_concurrent_requests(app: FastAPI) -> None:
    key = await new_key(app, "parallel-team", max_parallel=2)
    tiny = _deployment(app)
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tiny.counters.in_flight)
            await asyncio.sleep(0)

    async with keyed_client(app, key["key"]) as client:
        watcher = asyncio.create_task(watch())
        responses = await asyncio.gather(
            *(client.post("/v1/completions", json=_completion(max_tokens=8)) for _ in range(50))
        )
        done.set()
        await watcher
    statuses = [r.status_code for r in responses]
    assert 1 <= peak <= 2, peak
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 2
    refused = next(r for r in responses if r.status_code == 429)
    assert "max_parallel" in refused.json()["error"]["message"]


async def test_the_cache_is_per_team_and_a_hit_charges_no_completion(app: FastAPI) -> None:
    one = await new_key(app, "cache-one")
    other = await new_key(app, "cache-two")
    body = _completion(max_tokens=5, temperature=0)
    async with keyed_client(app, one["key"]) as first, keyed_client(app, other["key"]) as second:
        assert (await first.post("/v1/completions", json=body)).headers["x-blaze-cache"] == "miss"
        assert (await second.post("/v1/completions", json=body)).headers["x-blaze-cache"] == "miss"
        hit = await first.post("/v1/completions", json=body)
        assert hit.headers["x-blaze-cache"] == "hit-memory"
    rows = await _usage_rows(app, one["key_id"], count=2)
    miss, hit_row = rows
    assert miss["completion_tokens"] > 0 and miss["cached_tokens"] == 0
    assert (
        hit_row["completion_tokens"] == 0 and hit_row["cached_tokens"] == miss["completion_tokens"]
    )
    assert hit_row["prompt_tokens"] == miss["prompt_tokens"] and hit_row["deployment"] is None


async def _usage_rows(app: FastAPI, key_id: str, count: int) -> list[dict[str, Any]]:
    """The usage rows of ``key_id`` once ``count`` of them are written, oldest first."""
    tenancy = app.state.tenancy
    engine = tenancy.database.engine
    query = sa.select(tables.usage).where(tables.usage.c.key_id == key_id).order_by("id")
    deadline = time.monotonic() + 10
    while True:
        await tenancy.usage.flush()
        with engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(query)]
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows
        await asyncio.sleep(0.05)


async def test_a_stream_left_midway_is_charged_what_it_streamed(app: FastAPI) -> None:
    key = await new_key(app, "leavers", max_parallel=1)
    body = {**_completion(max_tokens=200), "stream": True, "temperature": 1.0}
    headers = [(b"authorization", f"Bearer {key['key']}".encode())]
    chunks = 0

    def enough(sent: Exchange) -> bool:
        nonlocal chunks
        chunks = sent.body.count(b"data: {")
        return chunks >= 5

    exchange = await hang_up(app, "/v1/completions", body, enough, extra_headers=headers)
    assert exchange.status == 200 and b"[DONE]" not in exchange.body
    (row,) = await _usage_rows(app, key["key_id"], count=1)
    assert row["status"] == 499 and row["team"] == "leavers"
    assert row["completion_tokens"] >= chunks >= 5
    assert row["prompt_tokens"] == -(-len(PROMPT) // 4) and row["deployment"] == "tiny/0"
    async with keyed_client(app, key["key"]) as client:  # the hang-up gave its slot back
        assert (
            await client.post("/v1/completions", json=_completion(max_tokens=2))
        ).status_code == 200


async def test_a_request_refused_before_the_engine_is_recorded_too(app: FastAPI) -> None:
    """An invalid body is recorded against the model it names (issue 13: the refusal counts
    for that model in the metrics and the usage, ``api/direct_route.py``)."""
    key = await new_key(app, "mistaken")
    async with keyed_client(app, key["key"]) as client:
        assert (
            await client.post("/v1/completions", json={"model": "nope", "prompt": "x"})
        ).status_code == 404
        assert (await client.post("/v1/completions", json={"model": "tiny"})).status_code == 400
    rows = await _usage_rows(app, key["key_id"], count=2)
    assert [(r["status"], r["model"], r["error_type"]) for r in rows] == [
        (404, "nope", "invalid_request_error"),
        (400, "tiny", "invalid_request_error"),
    ]


async def test_a_stream_read_to_its_end_is_recorded_and_not_a_hang_up(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    """Review of issue 12: the settle ran in the stream's last ``send``, which the disconnect
    watcher cancelled as the client closed: no usage record, and a false hang-up line."""
    key = await new_key(app, "streamers", max_parallel=1)
    caplog.set_level("INFO", logger="blaze_ai.api.disconnect")
    async with keyed_client(app, key["key"]) as client:
        for _ in range(3):  # max_parallel 1: each stream gave its slot back
            body = {**_completion(max_tokens=5), "stream": True}
            async with client.stream("POST", "/v1/completions", json=body) as response:
                assert response.status_code == 200
                assert b"[DONE]" in b"".join([chunk async for chunk in response.aiter_bytes()])
    rows = await _usage_rows(app, key["key_id"], count=3)
    assert [r["status"] for r in rows] == [200] * 3
    assert all(r["completion_tokens"] > 0 and r["prompt_tokens"] == 50 for r in rows)
    assert not [r for r in caplog.records if r.getMessage() == "client_disconnected"]
