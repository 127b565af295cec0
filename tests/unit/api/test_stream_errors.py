"""Errors before and after a stream starts, through the real app on an in-process transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from blaze_ai.api.app import create_app
from blaze_ai.config.schema import Settings
from blaze_ai.errors import EngineGenerationError
from blaze_ai.gateway import Deployment, Gateway, ModelGroup
from blaze_ai.gateway.admission import Admission
from tests.fakes import ScriptedEngine
from tests.leaks import no_leaks

BASE = "http://blaze"


@asynccontextmanager
async def make_client(engine: ScriptedEngine) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on one scripted deployment; on exit, the requests must have left
    nothing in flight, nothing admitted and no task running."""
    group = ModelGroup("m", (), (Deployment("m/0", engine),), created=0)  # type: ignore[arg-type]
    gateway = Gateway([group], admission=Admission(4), request_timeout_s=5)
    app = create_app(Settings(), gateway)
    transport = httpx.ASGITransport(app=app)
    async with no_leaks(gateway), httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


@pytest.fixture
async def failing() -> AsyncIterator[httpx.AsyncClient]:
    engine = ScriptedEngine("m/0", fail_after_chunks=EngineGenerationError("the engine broke"))
    async with make_client(engine) as client:
        yield client


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


async def test_error_after_stream_started_is_an_error_event(failing: httpx.AsyncClient) -> None:
    """The error event ends the stream: no ``[DONE]`` follows it
    (``shared/cases/stream-fallback-before-content.md``)."""
    response = await failing.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200
    payloads = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert "[DONE]" not in payloads
    error = json.loads(payloads[-1])["error"]
    assert error["message"] == "the engine broke"
    assert error["type"] == "server_error"
    texts = [json.loads(p)["choices"][0]["delta"].get("content") for p in payloads[:-1]]
    assert "partial" in texts
    assert not any(json.loads(p)["choices"][0]["finish_reason"] for p in payloads[:-1])


async def test_error_before_any_output_is_an_http_status() -> None:
    engine = ScriptedEngine("m/0")
    async with make_client(engine) as client:
        response = await client.post("/v1/chat/completions", json={**BODY, "model": "other"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


async def test_unexpected_exception_is_a_500_without_traceback() -> None:
    engine = ScriptedEngine("m/0", fail_after_chunks=RuntimeError("secret internals"))
    async with make_client(engine) as client:
        response = await client.post("/v1/chat/completions", json=BODY)
    event = next(line for line in response.text.splitlines() if '"error"' in line)
    assert "secret internals" not in event
    assert json.loads(event[6:])["error"]["type"] == "server_error"
