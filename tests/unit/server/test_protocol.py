"""The HTTP limits of ``LimitedHttpProtocol``, on a real uvicorn server in the test's loop with
a tiny ASGI app and sub-second limits, attacked over raw sockets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from blaze_ai.config.schema import ServerConfig
from blaze_ai.devtools.net import free_port
from blaze_ai.errors import ConnectionLimitError
from blaze_ai.server.protocol import error_bytes
from blaze_ai.server.serve import uvicorn_config
from tests.raw_http import close, closed_within, connect, read_answer, read_response, request_head

HEAD_S, BODY_S, IDLE_S = 0.4, 0.4, 0.4
SLACK_S = 1.0
"""Seconds a limit may fire late on a busy machine."""
STREAM_CHUNKS, STREAM_GAP_S = 8, 0.2  # a 1.6 s answer: four times every limit


class App:
    """Reads the whole body and answers its size; ``/stream`` sends a chunk every gap."""

    def __init__(self) -> None:
        self.calls = 0
        self.disconnects = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        self.calls += 1
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        if scope["path"] == "/stream":
            await _stream(send)
            return
        body = json.dumps({"bytes": size}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


async def _stream(send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(STREAM_CHUNKS):
        await asyncio.sleep(STREAM_GAP_S)
        await send({"type": "http.response.body", "body": b"%d\n" % i, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def serving(app: App, **limits: Any) -> AsyncIterator[int]:
    """Serve ``app`` with the short limits (overridden by ``limits``); yield its port."""
    options = {
        "head_timeout_s": HEAD_S,
        "body_read_timeout_s": BODY_S,
        "keep_alive_timeout_s": IDLE_S,
        **limits,
    }
    config = ServerConfig(port=free_port(), **options)
    server = uvicorn.Server(uvicorn_config(app, config))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield config.port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@pytest.fixture
def app() -> App:
    return App()


async def test_a_64_kb_header_gets_431_and_the_app_never_sees_it(app: App) -> None:
    async with serving(app) as port:  # the default limit: 16 KiB
        reader, writer = await connect(port)
        writer.write(request_head(extra=f"X-Big: {'a' * 65536}\r\n"))
        answer = await read_answer(reader, 5)
        await close(writer)
    assert answer is not None and answer.status == 431
    assert json.loads(answer.body)["error"]["code"] == "request_header_too_large"
    assert answer.headers["connection"] == "close" and answer.closed_after_s is not None
    assert app.calls == 0


async def test_a_head_over_the_limit_in_one_packet_gets_431(app: App) -> None:
    async with serving(app, max_header_bytes=2048) as port:
        reader, writer = await connect(port)
        writer.write(request_head(extra=f"X-Big: {'a' * 3000}\r\n"))  # complete, just too big
        answer = await read_answer(reader, 5)
        await close(writer)
    assert answer is not None and answer.status == 431


async def test_a_head_just_under_the_limit_is_served(app: App) -> None:
    async with serving(app, max_header_bytes=2048) as port:
        reader, writer = await connect(port)
        writer.write(request_head(extra=f"X-Big: {'a' * 1900}\r\n"))
        response = await read_response(reader)
        await close(writer)
    assert response.status == 200


async def test_a_large_body_in_the_same_read_as_its_head_is_not_taken_for_a_large_head(
    app: App,
) -> None:
    async with serving(app, max_header_bytes=2048) as port:
        reader, writer = await connect(port)
        for _ in range(2):  # then a pipelined head, its start read with the earlier body
            body = b"x" * 30000
            head = request_head("/", method="POST", extra=f"Content-Length: {len(body)}\r\n")
            writer.write(head + body)
        first, second = await read_response(reader), await read_response(reader)
        await close(writer)
    assert [first.status, second.status] == [200, 200]
    assert json.loads(second.body) == {"bytes": 30000}


async def test_a_pipelined_head_over_the_limit_split_across_reads_gets_431(app: App) -> None:
    async with serving(app, max_header_bytes=2048) as port:
        reader, writer = await connect(port)
        big = request_head(extra=f"X-Big: {'a' * 3000}\r\n")
        writer.write(request_head() + big[:1500])  # the second head starts in this read
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(big[1500:])  # and ends in this one, 1.5 KB later
        first = await read_response(reader)
        answer = await read_answer(reader, 5)
        await close(writer)
    assert first.status == 200 and answer is not None and answer.status == 431


async def test_a_slowloris_head_gets_408_within_the_head_timeout(app: App) -> None:
    async with serving(app) as port:
        reader, writer = await connect(port)
        started = time.perf_counter()

        async def trickle() -> None:
            for byte in request_head():
                writer.write(bytes([byte]))
                await asyncio.sleep(0.05)  # the whole head would take 1.4 s

        sender = asyncio.create_task(trickle())
        answer = await read_answer(reader, HEAD_S + SLACK_S)
        sender.cancel()
        await close(writer)
    assert answer is not None and answer.status == 408
    assert time.perf_counter() - started < HEAD_S + SLACK_S
    assert json.loads(answer.body)["error"]["code"] == "request_timeout"
    assert app.calls == 0


async def test_a_stalled_body_gets_408_and_the_app_sees_a_disconnect(app: App) -> None:
    async with serving(app) as port:
        reader, writer = await connect(port)
        writer.write(request_head("/", method="POST", extra="Content-Length: 100\r\n") + b"{")
        started = time.perf_counter()
        answer = await read_answer(reader, BODY_S + SLACK_S)
        await close(writer)
    assert answer is not None and answer.status == 408
    assert time.perf_counter() - started < BODY_S + SLACK_S
    assert (app.calls, app.disconnects) == (1, 1)


async def test_a_slow_body_that_keeps_coming_is_read_in_full(app: App) -> None:
    async with serving(app) as port:
        reader, writer = await connect(port)
        writer.write(request_head("/", method="POST", extra="Content-Length: 8\r\n"))
        for _ in range(8):  # 1.6 s in all, each gap half the body timeout
            await asyncio.sleep(BODY_S / 2)
            writer.write(b"x")
        response = await read_response(reader)
        await close(writer)
    assert response.status == 200 and json.loads(response.body) == {"bytes": 8}


async def test_a_new_connection_that_sends_nothing_is_closed_after_the_idle_timeout(
    app: App,
) -> None:
    async with serving(app) as port:
        reader, writer = await connect(port)
        closed_after_s = await closed_within(reader, IDLE_S + SLACK_S)
        await close(writer)
    assert closed_after_s is not None and closed_after_s >= IDLE_S * 0.9


async def test_an_idle_keep_alive_connection_is_closed_after_the_idle_timeout(app: App) -> None:
    async with serving(app) as port:
        reader, writer = await connect(port)
        for _ in range(2):  # kept alive between the two
            writer.write(request_head())
            assert (await read_response(reader)).status == 200
        closed_after_s = await closed_within(reader, IDLE_S + SLACK_S)
        await close(writer)
    assert closed_after_s is not None and closed_after_s >= IDLE_S * 0.9


async def test_beyond_max_connections_a_request_gets_503_with_retry_after(app: App) -> None:
    async with serving(app, max_connections=2, keep_alive_timeout_s=30) as port:
        held = [await connect(port) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await connect(port)
        writer.write(request_head())
        answer = await read_answer(reader, 5)
        await close(writer)
        for _, held_writer in held[1:]:
            await close(held_writer)
        await asyncio.sleep(0.05)
        first_reader, first_writer = held[0]
        first_writer.write(request_head())  # a connection within the cap is served
        served = await read_response(first_reader)
        await close(first_writer)
    assert answer is not None and answer.status == 503
    assert answer.headers["retry-after"] == "1"
    assert json.loads(answer.body)["error"]["type"] == "service_unavailable"
    assert served.status == 200 and app.calls == 1


async def test_a_stream_longer_than_every_limit_is_not_cut(app: App) -> None:
    async with (
        serving(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        client.stream("GET", "/stream") as response,
    ):
        lines = [line async for line in response.aiter_lines()]
    assert lines == [str(i) for i in range(STREAM_CHUNKS)]


async def test_a_pipelined_partial_head_waits_for_the_stream_before_its_408(app: App) -> None:
    async with serving(app) as port:
        reader, writer = await connect(port)
        writer.write(request_head("/stream") + b"GET / HT")  # the second head never ends
        head = await read_response(reader)  # chunked: no Content-Length, empty "body"
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
        answer = await read_answer(reader, HEAD_S + SLACK_S)
        await close(writer)
    assert head.status == 200 and all(b"\r\n%d\n\r\n" % i in body for i in range(STREAM_CHUNKS))
    assert answer is not None and answer.status == 408


async def test_a_pipelined_huge_head_is_refused_only_after_the_stream(app: App) -> None:
    async with serving(app, max_header_bytes=2048) as port:
        reader, writer = await connect(port)
        writer.write(request_head("/stream") + request_head(extra=f"X-Big: {'a' * 3000}\r\n"))
        head = await read_response(reader)
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 10)
        answer = await read_answer(reader, 5)
        await close(writer)
    assert head.status == 200 and all(b"\r\n%d\n\r\n" % i in body for i in range(STREAM_CHUNKS))
    assert answer is not None and answer.status == 431 and app.calls == 1


async def test_a_stalled_body_does_not_hold_a_graceful_shutdown(app: App) -> None:
    started = time.perf_counter()
    async with serving(app) as port:
        _reader, writer = await connect(port)
        writer.write(request_head("/", method="POST", extra="Content-Length: 100\r\n"))
        await asyncio.sleep(0.05)
    stopped_after_s = time.perf_counter() - started
    await close(writer)
    assert stopped_after_s < BODY_S + SLACK_S  # not the 10 s grace period
    assert app.disconnects == 1


def test_error_bytes_is_a_complete_response() -> None:
    error = ConnectionLimitError("busy", retry_after_s=0.2)
    raw = error_bytes(error, [(b"server", b"x")])
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.splitlines()[0] == b"HTTP/1.1 503 Service Unavailable"
    assert b"retry-after: 1" in head and b"connection: close" in head
    assert b"content-length: %d" % len(body) in head
    assert json.loads(body) == error.to_dict()
