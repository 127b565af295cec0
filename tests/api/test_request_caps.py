"""Per-request caps checked before anything is sent upstream (issue 11): ``max_tokens`` over a
remote deployment's ``max_output_tokens`` is a 400 naming it, and the upstream never sees it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

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
