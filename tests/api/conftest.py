"""The tiny-model app in this process: ``create_app(settings, gateway)`` behind
``httpx.ASGITransport``, with the settings of the e2e tiny server (``tiny_config``) and the real
tiny engines, so model-dependent figures (finish reasons, token counts) are real ones.

Each client fixture checks at teardown that the test left nothing in flight (``tests/leaks.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from fastapi import FastAPI

from blaze_ai.api.app import create_app
from blaze_ai.config import Settings, load_settings
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway import Gateway
from blaze_ai.gateway.build import build_gateway
from blaze_ai.tenancy.service import Tenancy
from tests.leaks import no_leaks

if TYPE_CHECKING:
    from blaze_ai.observability.tracing import Tracing

BASE_URL = "http://blaze"
READY_TIMEOUT_S = 120.0


@asynccontextmanager
async def serve_in_process(
    settings: Settings,
    gateway: Gateway,
    tenancy: Tenancy | None = None,
    *,
    tracing: Tracing | None = None,
) -> AsyncIterator[FastAPI]:
    """The app around ``gateway`` (and ``tenancy``: auth on; ``tracing``: its spans go there),
    with its lifespan entered (ASGITransport does not run it) and every engine ready."""
    app = create_app(settings, gateway, tenancy=tenancy, tracing=tracing)
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not gateway.ready:
            assert time.monotonic() < deadline, gateway.deployment_status()
            await asyncio.sleep(0.01)
        yield app


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    """An httpx client that sends its requests to ``app`` in this process."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL, timeout=60)


@pytest.fixture(scope="package")
async def tiny_app(tiny_config: Path) -> AsyncIterator[FastAPI]:
    """The app on the tiny model and the digits model, shared by the tests of ``tests/api``."""
    settings = load_settings(tiny_config)
    gateway = build_gateway(settings, make_engine_factory(settings.runtime))
    async with serve_in_process(settings, gateway) as app:
        yield app


@pytest.fixture
async def http(tiny_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with no_leaks(tiny_app.state.gateway), asgi_client(tiny_app) as client:
        yield client


@pytest.fixture
async def client(tiny_app: FastAPI) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai client, talking to the in-process app."""
    async with (
        no_leaks(tiny_app.state.gateway),
        openai.AsyncOpenAI(
            base_url=f"{BASE_URL}/v1",
            api_key="unused",
            max_retries=0,
            http_client=asgi_client(tiny_app),
        ) as openai_client,
    ):
        yield openai_client
