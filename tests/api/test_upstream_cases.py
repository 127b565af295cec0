"""Upstreams that misbehave, through the real app in-process with the official ``openai``
client: the two cases in ``shared/cases/`` about the router."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import httpx
import openai
import pytest

from blaze_ai.config.schema import RuntimeConfig
from blaze_ai.devtools.fake_upstream import Behaviour
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway.build import build_gateway
from tests.api.conftest import BASE_URL, asgi_client, serve_in_process
from tests.leaks import no_leaks
from tests.unit.gateway.conftest import StartUpstream, leak_check, remote_settings, upstream

__all__ = ["leak_check", "upstream"]  # the fixtures, re-used

MESSAGES = [{"role": "user", "content": "hi"}]
Serve = Callable[[list[dict[str, Any]]], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """``await serve(models)`` -> an httpx client on the app serving ``models`` (remote),
    checked for leaks at teardown."""
    async with AsyncExitStack() as stack:

        async def start(models: list[dict[str, Any]]) -> httpx.AsyncClient:
            settings = remote_settings(models)
            gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
            await stack.enter_async_context(no_leaks(gateway))  # checked once the app stopped
            app = await stack.enter_async_context(serve_in_process(settings, gateway))
            return await stack.enter_async_context(asgi_client(app))

        yield start


def with_fallback(url_big: str, url_small: str) -> list[dict[str, Any]]:
    """Model ``big`` on one upstream (no retry), falling back to ``small`` on another."""
    return [
        {
            "name": "big",
            "deployments": [url_big],
            "fallbacks": ["small"],
            "retry": {"num_retries": 0},
        },
        {"name": "small", "deployments": [url_small]},
    ]


def openai_client(http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{BASE_URL}/v1", api_key="unused", max_retries=0, http_client=http
    )


async def test_upstream_429_reaches_the_client_as_429(
    upstream: StartUpstream, serve: Serve
) -> None:
    """``shared/cases/upstream-429-status.md``: a provider rate limit is a 429
    ``rate_limit_error`` with the upstream's ``Retry-After``, also while it cools down."""
    a, url_a = await upstream("a")
    a.behaviour = Behaviour(mode="fail", status=429, retry_after="2", error_type="rate_limit_error")
    http = await serve([{"name": "m", "deployments": [url_a]}])
    body = {"model": "m", "messages": MESSAGES}
    for _ in range(2):  # the first reaches the upstream; the second finds it cooling down
        response = await http.post("/v1/chat/completions", json=body)
        assert response.status_code == 429
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(response.headers["retry-after"]) <= 2
    assert a.requests == 1
    with pytest.raises(openai.RateLimitError):
        await openai_client(http).chat.completions.create(model="m", messages=MESSAGES)  # type: ignore[arg-type]


async def test_a_503_stays_a_503_when_no_deployment_is_healthy(
    upstream: StartUpstream, serve: Serve
) -> None:
    """``shared/cases/upstream-429-status.md``: 503 stays for breakers open / health failing."""
    a, url_a = await upstream("a")
    a.behaviour = Behaviour(mode="fail", status=503)
    http = await serve([{"name": "m", "deployments": [url_a], "breaker": {"failure_threshold": 1}}])
    body = {"model": "m", "messages": MESSAGES}
    statuses = [(await http.post("/v1/chat/completions", json=body)).status_code for _ in range(2)]
    assert statuses == [503, 503]


async def test_stream_failing_after_a_role_only_chunk_falls_back(
    upstream: StartUpstream, serve: Serve
) -> None:
    """``shared/cases/stream-fallback-before-content.md``: nothing was sent, so the fallback
    model answers and the client sees one clean stream from it."""
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="error_event", error_type="insufficient_quota")
    http = await serve(with_fallback(url_a, url_b))
    stream = await openai_client(http).chat.completions.create(
        model="big",
        messages=MESSAGES,  # type: ignore[arg-type]
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text.startswith("b:")
    assert a.requests == 1


async def test_error_after_content_keeps_the_upstream_type_and_ends_the_stream(
    upstream: StartUpstream, serve: Serve
) -> None:
    """``shared/cases/stream-fallback-before-content.md``: once content was sent the error is
    relayed with the upstream's ``type`` and ``code``, and no ``[DONE]`` follows it."""
    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="error_event", error_type="insufficient_quota", content_chunks=1)
    http = await serve(with_fallback(url_a, url_b))
    body = {"model": "big", "messages": MESSAGES, "stream": True}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        events = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert (error["type"], error["code"], error["message"]) == (
        "insufficient_quota",
        "quota",
        "quota",
    )
    assert any(
        "a:" in (json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content", "")
        for e in events[:-1]
    )
    assert b.requests == 0
