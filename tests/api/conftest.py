"""Clients for the tiny-model server (a real ``blaze serve`` subprocess on loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from blaze_ai.devtools.server import BlazeServer


@pytest.fixture(scope="session")
def http(tiny_server: BlazeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_server.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def client(tiny_server: BlazeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="unused", max_retries=0)
