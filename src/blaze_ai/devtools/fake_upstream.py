"""A small OpenAI-compatible server that can be told to answer, fail, be slow, hang or cut streams.

Used by Blaze's tests and benchmarks as a real HTTP upstream on loopback, and handy for trying
failover by hand::

    python -m blaze_ai.devtools.fake_upstream --port 8001 --name a
    curl -X POST localhost:8001/control -d '{"mode": "fail", "status": 503}'

Modes: ``ok`` (answer at once), ``slow`` (answer after ``delay_s``), ``fail`` (answer ``status``
with an OpenAI error body and optional ``Retry-After``), ``hang`` (never answer), ``cut`` (stream
two chunks, then drop the connection), ``error_event`` (answer 200, stream a role-only chunk and
``content_chunks`` content chunks, then an error event of ``error_type``, and close), ``trickle``
(stream ``content_chunks`` one-token chunks, ``delay_s`` seconds apart, then end normally; a
request that is not streamed is answered at once). In ``ok`` and ``cut`` modes, ``chunk_delay_s``
spaces the chunks of a stream (a slow stream a client can hang up on).
``GET /stats`` counts the completions it was asked for; ``GET /v1/models`` answers 200 except
in ``fail`` and ``hang`` modes (for health checks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

WORDS = ("Hello", " from", " the", " fake", " upstream", ".")


@dataclass
class Behaviour:
    """What the server does now (changed through ``POST /control``)."""

    mode: str = "ok"
    status: int = 500
    delay_s: float = 0.0
    retry_after: str | None = None
    error_type: str = "x"
    content_chunks: int = 0
    chunk_delay_s: float = 0.0


class FakeUpstream:
    """The aiohttp application and its state.

    Args:
        name: returned in every answer's text, so tests can see who answered.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.behaviour = Behaviour()
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.last_authorization: str | None = None
        self.last_traceparent: str | None = None
        self.app = web.Application()
        self.app.add_routes(
            [
                web.post("/v1/chat/completions", self.completion),
                web.post("/v1/completions", self.completion),
                web.get("/v1/models", self.models),
                web.post("/control", self.control),
                web.get("/stats", self.stats),
            ]
        )

    async def control(self, request: web.Request) -> web.Response:
        """Replace the behaviour with the posted fields."""
        self.behaviour = Behaviour(**(await request.json()))
        return web.json_response({"ok": True})

    async def stats(self, request: web.Request) -> web.Response:
        """How many completions were requested."""
        return web.json_response({"name": self.name, "requests": self.requests})

    async def models(self, request: web.Request) -> web.Response:
        """The model list; fails in ``fail`` mode and hangs in ``hang`` mode."""
        if self.behaviour.mode == "hang":
            await asyncio.sleep(3600)
        if self.behaviour.mode == "fail":
            return _error(self.behaviour)
        return web.json_response({"object": "list", "data": [{"id": "fake", "object": "model"}]})

    async def completion(self, request: web.Request) -> web.StreamResponse:
        """A chat or text completion, shaped by the behaviour."""
        self.requests += 1
        self.last_authorization = request.headers.get("Authorization")
        self.last_traceparent = request.headers.get("traceparent")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._complete(request)
        finally:
            self.in_flight -= 1

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        behaviour = self.behaviour
        if behaviour.mode == "hang":
            await asyncio.sleep(3600)
        if behaviour.mode == "slow":
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.mode == "fail":
            return _error(behaviour)
        chat = request.path.endswith("/chat/completions")
        if behaviour.mode == "error_event":
            return await self._error_event(request, behaviour)
        if body.get("stream") and behaviour.mode == "trickle":
            return await self._trickle(request, chat, behaviour)
        if body.get("stream"):
            return await self._stream(request, chat, cut=behaviour.mode == "cut")
        return web.json_response(self._answer(body, chat))

    def _answer(self, body: dict[str, Any], chat: bool) -> dict[str, Any]:
        text = f"{self.name}: " + "".join(WORDS)
        n = int(body.get("n") or 1)
        choice: dict[str, Any] = {"finish_reason": "stop", "logprobs": None}
        choice |= {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        return {
            "id": "fake-1",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [{**choice, "index": i} for i in range(n)],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        }

    async def _stream(self, request: web.Request, chat: bool, *, cut: bool) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        pieces = [f"{self.name}:", *WORDS]
        for i, piece in enumerate(pieces):
            if cut and i == 2:
                assert request.transport is not None
                request.transport.close()  # drop the connection mid-body
                return response
            await response.write(_event(_chunk(piece, None, chat)))
            if self.behaviour.chunk_delay_s:
                await asyncio.sleep(self.behaviour.chunk_delay_s)
        return await _finish(response, chat, len(pieces))

    async def _trickle(
        self, request: web.Request, chat: bool, behaviour: Behaviour
    ) -> web.StreamResponse:
        """``content_chunks`` one-token chunks, ``delay_s`` seconds apart (a long stream)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(behaviour.content_chunks):
            if i:
                await asyncio.sleep(behaviour.delay_s)
            await response.write(_event(_chunk(f" {i}", None, chat)))
        return await _finish(response, chat, behaviour.content_chunks)

    async def _error_event(self, request: web.Request, behaviour: Behaviour) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        role = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        await response.write(_event({"id": "fake-1", "object": "chunk", "choices": [role]}))
        for i in range(behaviour.content_chunks):
            await response.write(_event(_chunk(f"{self.name}:" if i == 0 else " more", None, True)))
        error = {"message": "quota", "type": behaviour.error_type, "param": None, "code": "quota"}
        await response.write(_event({"error": error}))
        await response.write_eof()
        return response


async def _finish(response: web.StreamResponse, chat: bool, tokens: int) -> web.StreamResponse:
    """End a stream of ``tokens`` chunks: the finish chunk, usage, ``[DONE]``."""
    await response.write(_event(_chunk("", "stop", chat)))
    usage = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
    await response.write(_event({"id": "fake-1", "choices": [], "usage": usage}))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _chunk(text: str, finish: str | None, chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    choice |= {"delta": {"content": text}} if chat else {"text": text}
    return {"id": "fake-1", "object": "chunk", "choices": [choice]}


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def _error(behaviour: Behaviour) -> web.Response:
    headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
    body = {
        "error": {
            "message": f"scripted failure {behaviour.status}",
            "type": behaviour.error_type,
            "param": None,
            "code": None,
        }
    }
    return web.json_response(body, status=behaviour.status, headers=headers)


async def serve(upstream: FakeUpstream, host: str, port: int) -> web.AppRunner:
    """Start ``upstream`` on ``host:port`` in the running loop; return the runner to clean up.

    A handler is cancelled when its client goes away (``handler_cancellation``), so a hung
    answer ends with its connection, or at clean-up, instead of outliving the test's loop."""
    runner = web.AppRunner(
        upstream.app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True
    )
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def main() -> None:
    """``python -m blaze_ai.devtools.fake_upstream --port P [--name N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="fake")
    args = parser.parse_args()
    web.run_app(
        FakeUpstream(args.name).app, host=args.host, port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
