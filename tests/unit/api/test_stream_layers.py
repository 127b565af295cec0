"""How many async generators a streamed token crosses, engine to HTTP body (target: at most 5).

Counted from inside the engine's stream: every frame on the stack whose code is an async
generator is one layer the token passes through on its way out. Before the restructure of the
gateway it was 9 (engine, Router.stream, _committed, Gateway._routed_stream, ResponseCaching.stream,
Gateway.stream, _primed.rest, chat_stream_events, guard_stream).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import AsyncIterator

import httpx

from blaze_ai.api.app import create_app
from blaze_ai.config.schema import Settings
from blaze_ai.gateway import Deployment, Gateway, ModelGroup
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.response_cache import ResponseCache
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import FinishReason, StreamItem, TextChunk, TextRequest, Usage
from tests.fakes import ScriptedEngine

LLM = {"engine": "llm", "model": "unused"}


class LayerCountingEngine(ScriptedEngine):
    """Streams one chunk, noting the async generator frames on the stack as it yields."""

    layers: list[str]

    async def stream(self, req: TextRequest, deadline: Deadline) -> AsyncIterator[StreamItem]:
        yield TextChunk(0, "hi", FinishReason.STOP)  # pulled early, to open the stream
        frame = sys._getframe()  # the second item goes the whole way, to the HTTP body
        self.layers = []
        while frame is not None:
            if frame.f_code.co_flags & inspect.CO_ASYNC_GENERATOR:
                self.layers.append(frame.f_code.co_qualname)
            frame = frame.f_back
        yield Usage(1, 1)


async def test_a_streamed_token_crosses_at_most_five_generators() -> None:
    engine = LayerCountingEngine("m/0")
    group = ModelGroup("m", (), (Deployment("m/0", engine),), created=0)  # type: ignore[arg-type]
    cache = ResponseCache.from_settings(Settings(models=[{"name": "m", "deployments": [LLM]}]))
    assert cache is not None  # the memory level is on by default: the cache step is in the path
    gateway = Gateway([group], admission=Admission(4), request_timeout_s=5, cache=cache)
    app = create_app(Settings(), gateway)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://blaze") as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        body["temperature"] = 0  # cacheable: recorded while relayed
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert len(engine.layers) <= 5, engine.layers
