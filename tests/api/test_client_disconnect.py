"""A client that hangs up mid-request is an ordinary event: one ``client_disconnected`` line at
info (no traceback, never the prompt), counted per deployment, its work stopped.

Issue 11: a hang-up used to be logged at ``level=error`` as ``engine_raised_unexpectedly ...
CancelledError`` with a traceback. Through the real app in-process, with a scripted ASGI client
(``tests/api/hangup.py``), on the tiny local engine and on a fake upstream, for chat and
completions, before the answer and mid-stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
from fastapi import FastAPI

from blaze_ai.config.schema import RuntimeConfig
from blaze_ai.devtools.fake_upstream import Behaviour, FakeUpstream
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway import Deployment
from blaze_ai.gateway.build import build_gateway
from tests.api.conftest import serve_in_process
from tests.api.hangup import Exchange, hang_up, text_events
from tests.leaks import no_leaks
from tests.unit.gateway.conftest import StartUpstream, leak_check, remote_settings, upstream

__all__ = ["leak_check", "upstream"]  # the fixtures, re-used

PROMPT = "a-secret-prompt-7f3a tell me a long story"
"""The prompt of every request here: it must appear in no log record."""

ENDPOINTS = ["/v1/chat/completions", "/v1/completions"]


def body(path: str, model: str, *, stream: bool) -> dict[str, Any]:
    """A request long enough that the hang-up comes before its end: 200 tokens, sampled (greedy,
    the tiny model makes byte tokens that form no text until the end); not streamed, four
    choices, all of which must end before the answer does."""
    fields: dict[str, Any] = {"model": model, "stream": stream, "max_tokens": 200}
    if not stream:
        fields["n"] = 4
    if path == "/v1/chat/completions":
        return {**fields, "messages": [{"role": "user", "content": PROMPT}]}
    return {**fields, "prompt": PROMPT}


def deployment(app: FastAPI, model: str) -> Deployment:
    (found,) = app.state.gateway.resolve(model).deployments
    assert isinstance(found, Deployment)
    return found


def assert_one_quiet_disconnect(
    records: list[logging.LogRecord], *, model: str, endpoint: str, phase: str
) -> None:
    """One ``client_disconnected`` record at info with the request's fields; no record at
    warning or above, none with a traceback, none holding the prompt."""
    events = [r for r in records if r.getMessage() == "client_disconnected"]
    assert len(events) == 1, [r.getMessage() for r in records]
    (event,) = events
    assert event.levelno == logging.INFO
    fields = vars(event)
    assert (fields["model"], fields["endpoint"], fields["phase"]) == (model, endpoint, phase)
    assert fields["request_id"] == "hangup-1"
    assert 0 < fields["elapsed_s"] < 20
    loud = [(r.levelname, r.getMessage()) for r in records if r.levelno >= logging.WARNING]
    assert not loud
    assert not [r.getMessage() for r in records if r.exc_info or r.exc_text or r.stack_info]
    assert not [r.getMessage() for r in records if PROMPT in str(vars(r))]


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


# --- the tiny local engine ------------------------------------------------------------------


@pytest.fixture
async def local(tiny_app: FastAPI) -> AsyncIterator[FastAPI]:
    async with no_leaks(tiny_app.state.gateway):
        yield tiny_app


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_hang_up_on_the_local_engine_is_one_info_line(
    local: FastAPI, path: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the answer (a 499) or mid-stream (the stream ends without ``[DONE]``)."""
    tiny = deployment(local, "tiny")
    before = tiny.counters.client_disconnects
    caplog.set_level(logging.INFO)
    # streamed, once the stream has started: the tiny model's random tokens rarely decode to
    # text, so waiting for a text event could wait until the stream ends
    when: Callable[[Exchange], bool] = (
        (lambda sent: sent.status == 200 and tiny.counters.in_flight > 0)
        if stream
        else (lambda _: tiny.counters.in_flight > 0)
    )
    exchange = await hang_up(local, path, body(path, "tiny", stream=stream), when)
    if stream:
        assert exchange.status == 200 and b"[DONE]" not in exchange.body
    else:
        assert exchange.status == 499
    phase = "streaming" if stream else "waiting"
    assert_one_quiet_disconnect(caplog.records, model="tiny", endpoint=path, phase=phase)
    assert tiny.counters.client_disconnects == before + 1
    assert tiny.counters.failures == 0
    await until(lambda: tiny.engine.load().in_flight == 0)  # the engine dropped the request


# --- a fake upstream ------------------------------------------------------------------------


@pytest.fixture
async def remote(upstream: StartUpstream) -> AsyncIterator[tuple[FastAPI, FakeUpstream]]:
    """The app serving model ``fake`` from one fake upstream (no retries), checked for leaks
    once it stopped."""
    server, url = await upstream("a")
    settings = remote_settings(
        [{"name": "fake", "deployments": [url], "retry": {"num_retries": 0}}]
    )
    gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(no_leaks(gateway))
        app = await stack.enter_async_context(serve_in_process(settings, gateway))
        yield app, server


async def remote_hang_up(
    remote: tuple[FastAPI, FakeUpstream],
    path: str,
    *,
    stream: bool,
    behaviour: Behaviour,
    when: Callable[[Exchange], bool] | None = None,
) -> Exchange:
    """Hang up on the fake upstream's model (by default once the upstream has the request);
    then the upstream must see its connection closed."""
    app, server = remote
    server.behaviour = behaviour
    ready = when or (lambda _: server.in_flight > 0)
    exchange = await hang_up(app, path, body(path, "fake", stream=stream), ready)
    await until(lambda: server.in_flight == 0)  # Blaze closed its upstream connection
    assert deployment(app, "fake").counters.client_disconnects == 1
    assert deployment(app, "fake").counters.failures == 0
    return exchange


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ENDPOINTS)
async def test_hang_up_on_a_hung_upstream_is_one_info_line_and_a_499(
    remote: tuple[FastAPI, FakeUpstream], path: str, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Streamed, found while fixing issue 11: a stream still waiting for its first item did not
    watch for the hang-up, so a hung upstream held the request (and its upstream connection)
    until the request timeout, and uvicorn logged a CancelledError traceback at shutdown."""
    caplog.set_level(logging.INFO)
    exchange = await remote_hang_up(remote, path, stream=stream, behaviour=Behaviour(mode="hang"))
    assert exchange.status == 499
    assert_one_quiet_disconnect(caplog.records, model="fake", endpoint=path, phase="waiting")


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_hang_up_mid_stream_on_a_slow_upstream_is_one_info_line(
    remote: tuple[FastAPI, FakeUpstream], path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    exchange = await remote_hang_up(
        remote,
        path,
        stream=True,
        behaviour=Behaviour(chunk_delay_s=0.2),
        when=lambda sent: text_events(sent) > 0,
    )
    assert exchange.status == 200 and b"[DONE]" not in exchange.body
    assert_one_quiet_disconnect(caplog.records, model="fake", endpoint=path, phase="streaming")
