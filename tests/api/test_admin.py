"""/admin/deployments shows each deployment's state, load (queue depth, batch size) and stats."""

from __future__ import annotations

import httpx


async def test_deployments_show_state_load_and_stats(http: httpx.AsyncClient) -> None:
    await http.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    data = (await http.get("/admin/deployments")).json()["data"]
    tiny = next(d for d in data if d["model"] == "tiny")
    assert tiny["engine_state"] == "ready"
    assert tiny["breaker_state"] == "closed"
    assert tiny["healthy"] is True
    fields = ("in_flight", "queue_depth", "batch_size", "cancelled_total", "requests")
    for field in (*fields, "cached_prompt_tokens_total", "client_disconnects_total"):
        assert isinstance(tiny[field], int), field
    assert tiny["requests"] >= 1
    assert tiny["ewma_latency_ms"] is not None
