"""Per-request caps checked before anything is sent upstream (issue 11): ``max_tokens`` over a
remote deployment's ``max_output_tokens`` is a 400 naming it, and the upstream never sees it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from blaze_ai.config import load_settings
from blaze_ai.config.schema import RuntimeConfig
from blaze_ai.devtools.fake_upstream import FakeUpstream
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway.build import build_gateway
from tests.api.conftest import asgi_client, serve_in_process
from tests.leaks import no_leaks
from tests.unit.gateway.conftest import StartUpstream, leak_check, remote_settings, upstream

__all__ = ["leak_check", "upstream"]  # the fixtures, re-used

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def served(upstream: StartUpstream) -> AsyncIterator[tuple[httpx.AsyncClient, FakeUpstream]]:
    fake, url = await upstream("a")
    deployment = {"base_url": url, "max_output_tokens": 1000}
    settings = remote_settings([{"name": "m", "deployments": [deployment]}])
    gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
    async with (
        no_leaks(gateway),
        serve_in_process(settings, gateway) as app,
        asgi_client(app) as http,
    ):
        yield http, fake


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("max_tokens", [1001, 10**20])
async def test_max_tokens_over_the_remote_cap_is_refused_before_the_upstream(
    served: tuple[httpx.AsyncClient, FakeUpstream], stream: bool, max_tokens: int
) -> None:
    http, fake = served
    body = {"model": "m", "messages": MESSAGES, "max_tokens": max_tokens, "stream": stream}
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "max_tokens" and error["type"] == "invalid_request_error"
    assert fake.requests == 0
    ok = await http.post("/v1/chat/completions", json={**body, "max_tokens": 1000})
    assert ok.status_code == 200 and fake.requests == 1


@pytest.fixture
async def local_capped(
    tiny_llama_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The tiny model, four rows, at most 100 completion tokens per request."""
    config = tmp_path / "blaze.yaml"
    config.write_text(
        "models:\n"
        "  - name: tiny\n"
        "    deployments:\n"
        f"      - {{engine: llm, model: '{tiny_llama_dir}', max_batch_size: 4,"
        " max_completion_tokens_per_request: 100}\n"
    )
    settings = load_settings(config)
    gateway = build_gateway(settings, make_engine_factory(settings.runtime))
    async with (
        no_leaks(gateway),
        serve_in_process(settings, gateway) as app,
        asgi_client(app) as http,
    ):
        yield http, gateway


async def test_review_a_list_of_prompts_cannot_multiply_the_per_request_token_cap(
    local_capped: tuple[httpx.AsyncClient, Any],
) -> None:
    """One ``/v1/completions`` request is one request: four prompts × 40 tokens is 160 tokens,
    over the deployment's 100 (each prompt alone is within it)."""
    http, _ = local_capped
    body = {"model": "tiny", "prompt": ["a", "b", "c", "d"], "max_tokens": 40, "temperature": 0}
    response = await http.post("/v1/completions", json=body)
    assert response.status_code == 400, response.json()["usage"]
    assert response.json()["error"]["param"] == "max_tokens"


async def test_review_a_list_of_prompts_cannot_hold_the_whole_batch(
    local_capped: tuple[httpx.AsyncClient, Any],
) -> None:
    """Issue 11's promise, through the other door: four prompts × n=2 of one completions request
    are eight sequences of one request (4 × 2 × 12 = 96 tokens, within the cap); they must
    take turns like ``n: 8`` does, so a short request that arrives meanwhile is not queued
    behind all of them."""
    http, gateway = local_capped
    (tiny,) = gateway.resolve("tiny").deployments
    finished: list[str] = []

    async def big() -> None:
        body = {"model": "tiny", "prompt": ["a", "b", "c", "d"], "n": 2, "max_tokens": 12}
        response = await http.post("/v1/completions", json={**body, "temperature": 0})
        assert response.status_code == 200, response.text
        finished.append("big")

    async def short() -> None:
        async with asyncio.timeout(10):
            while tiny.engine.load().batch_size == 0:  # sent once the big one decodes
                await asyncio.sleep(0.001)
        body = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2, "temperature": 0}
        response = await http.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        finished.append("short")

    await asyncio.gather(big(), short())
    assert finished == ["short", "big"]
