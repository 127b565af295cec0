"""Real HTTP upstreams on loopback (the fake OpenAI-compatible server) and gateways over them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from blaze_ai.config.schema import RuntimeConfig, Settings
from blaze_ai.devtools.fake_upstream import FakeUpstream, serve
from blaze_ai.devtools.net import free_port
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway import Gateway
from blaze_ai.gateway.build import build_gateway
from tests.fakes import FakeTimer
from tests.leaks import assert_no_leaks

StartUpstream = Callable[[str], Awaitable[tuple[FakeUpstream, str]]]


@pytest.fixture
async def leak_check() -> AsyncIterator[list[Gateway]]:
    """The gateways the test started. Every fixture that starts something depends on this one,
    so it is torn down last: then no request may be in flight or admitted in those gateways,
    and no task the test created may still run."""
    tasks_before = set(asyncio.all_tasks())
    gateways: list[Gateway] = []
    yield gateways
    await assert_no_leaks(gateways, tasks_before)


@pytest.fixture
async def upstream(leak_check: list[Gateway]) -> AsyncIterator[StartUpstream]:
    """``await upstream(name)`` -> (server, base_url) of a fake upstream started for the test."""
    runners: list[web.AppRunner] = []

    async def start(name: str) -> tuple[FakeUpstream, str]:
        server = FakeUpstream(name)
        port = free_port()
        runners.append(await serve(server, "127.0.0.1", port))
        return server, f"http://127.0.0.1:{port}/v1"

    yield start
    for runner in runners:
        await runner.cleanup()


def remote_settings(models: list[dict[str, Any]]) -> Settings:
    """Settings serving ``models``; each deployment given as a base URL or a dict."""
    specs = []
    for model in models:
        deployments = [
            {"engine": "remote", "model": "fake", **({"base_url": d} if isinstance(d, str) else d)}
            for d in model["deployments"]
        ]
        specs.append({**model, "deployments": deployments})
    return Settings(models=specs)


@pytest.fixture
async def gateway_for(
    leak_check: list[Gateway],
) -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """``await gateway_for(settings, timer=None)`` -> a started Gateway, stopped after the test
    (and then checked for leaks by ``leak_check``); with a :class:`~tests.fakes.FakeTimer` its
    clock and sleep drive the gateway's time."""
    started = leak_check

    async def build(settings: Settings, timer: FakeTimer | None = None) -> Gateway:
        time = {"clock": timer.clock, "sleep": timer.sleep} if timer is not None else {}
        gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()), **time)
        await gateway.start()
        started.append(gateway)
        return gateway

    yield build
    for gateway in started:
        await gateway.stop()
