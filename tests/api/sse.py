"""Read an SSE response into its ``data:`` payloads."""

from __future__ import annotations

import json
from typing import Any

import httpx


async def sse_exchange(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[httpx.Headers, list[Any]]:
    """POST ``body`` with streaming; return the response headers and the decoded events
    (``[DONE]`` stays a string)."""
    events: list[Any] = []
    async with http.stream("POST", path, json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line:
                continue
            assert line.startswith("data: "), line
            data = line[len("data: ") :]
            events.append(data if data == "[DONE]" else json.loads(data))
    return response.headers, events


async def sse_payloads(
    http: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> list[Any]:
    """POST ``body`` with streaming and return the decoded events; ``[DONE]`` stays a string."""
    return (await sse_exchange(http, path, body, headers))[1]
