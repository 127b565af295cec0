"""The tiny-model app with auth on, in this process: a SQLite key database in a temporary
folder, an admin key file, in-process limits with a short window; and helpers to make keys
through the admin API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
from fastapi import FastAPI

from blaze_ai.config import load_settings
from blaze_ai.config.schema import Settings
from blaze_ai.config.tenancy import AuthConfig, LimitsConfig
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway.build import build_gateway
from blaze_ai.tenancy.service import build_tenancy
from tests.api.conftest import BASE_URL, asgi_client, serve_in_process

ADMIN_KEY = "blaze-admin-test-key-0123456789"
WINDOW_S = 4
"""``limits.window_s`` of the keyed app: short, so a test can wait a window out."""


def keyed_settings(tiny_config: Path, folder: Path, **auth: Any) -> Settings:
    """The tiny server's settings with auth on: ``folder`` holds the admin key file and the
    SQLite key database."""
    key_file = folder / "admin.key"
    key_file.write_text(ADMIN_KEY + "\n")
    settings = load_settings(tiny_config)
    fields: dict[str, Any] = {
        "enabled": True,
        "admin_key_file": key_file,
        "database_url": f"sqlite:///{folder / 'blaze.db'}",
        "cache_ttl_s": 0.2,
        **auth,
    }
    return settings.model_copy(
        update={"auth": AuthConfig(**fields), "limits": LimitsConfig(window_s=WINDOW_S)}
    )


@asynccontextmanager
async def keyed_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app of ``settings`` with its tenancy, started and ready."""
    tenancy = build_tenancy(settings)
    assert tenancy is not None
    gateway = build_gateway(
        settings, make_engine_factory(settings.runtime), limiter=tenancy.limiter
    )
    async with serve_in_process(settings, gateway, tenancy) as app:
        yield app


def admin(app: FastAPI) -> httpx.AsyncClient:
    """An httpx client of ``app`` that sends the admin key."""
    client = asgi_client(app)
    client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return client


async def new_key(app: FastAPI, team: str, **fields: Any) -> dict[str, Any]:
    """Create a key of ``team`` through ``POST /admin/keys``; its JSON, secret in ``key``."""
    async with admin(app) as client:
        response = await client.post("/admin/keys", json={"team": team, **fields})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def keyed_client(app: FastAPI, key: str) -> httpx.AsyncClient:
    """An httpx client of ``app`` that sends ``key``."""
    client = asgi_client(app)
    client.headers["Authorization"] = f"Bearer {key}"
    return client


def openai_client(app: FastAPI, key: str) -> openai.AsyncOpenAI:
    """The official client with ``key``, talking to ``app`` in this process."""
    return openai.AsyncOpenAI(
        base_url=f"{BASE_URL}/v1", api_key=key, max_retries=0, http_client=asgi_client(app)
    )
