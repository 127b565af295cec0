"""Blaze as a real server in front of two fake upstream processes: failover end to end."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from blaze_ai.devtools.server import BlazeServer
from tests.e2e.servers import start
from tests.e2e.upstreams import Upstream, launch_upstream, wait_until_up


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[BlazeServer, Upstream, Upstream]]:
    a, b = launch_upstream("a"), launch_upstream("b")  # both start at once
    config = tmp_path / "blaze.yaml"
    config.write_text(
        "models:\n"
        "  - name: m\n"
        "    strategy: least_request\n"
        "    breaker: {failure_threshold: 3, cooldown_s: 30}\n"
        "    health_check: {interval_s: 0.5, unhealthy_threshold: 2}\n"
        "    deployments:\n"
        f"      - {{engine: remote, base_url: '{a.url}/v1', model: fake, timeout_s: 2}}\n"
        f"      - {{engine: remote, base_url: '{b.url}/v1', model: fake, timeout_s: 2}}\n"
    )
    for upstream in (a, b):
        wait_until_up(upstream)
    server = start(tmp_path, config)
    yield server, a, b
    server.stop()
    for upstream in (a, b):
        upstream.stop()


BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


async def _load(base_url: str, total: int, concurrency: int, on_progress: object) -> list[int]:
    statuses: list[int] = []
    queue = list(range(total))
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def worker() -> None:
            while queue:
                queue.pop()
                response = await client.post("/v1/chat/completions", json=BODY)
                statuses.append(response.status_code)
                on_progress(len(statuses))  # type: ignore[operator]

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def test_killing_an_upstream_mid_run_loses_no_request(
    pair: tuple[BlazeServer, Upstream, Upstream],
) -> None:
    server, a, _b = pair
    killed = {"done": False}

    def progress(done: int) -> None:
        if done >= 50 and not killed["done"]:
            killed["done"] = True
            a.process.kill()  # SIGKILL: connections reset, nothing answers any more

    statuses = asyncio.run(_load(server.base_url, 200, 16, progress))
    assert killed["done"]
    assert len(statuses) == 200
    assert statuses.count(200) == 200, sorted(set(statuses))
    status = {
        d["name"]: d for d in httpx.get(f"{server.base_url}/admin/deployments").json()["data"]
    }
    assert status["m/0"]["failures"] >= 1
    assert status["m/0"]["last_error"]
    assert status["m/1"]["requests"] >= 150


def test_cut_stream_reaches_the_client_as_an_error(
    pair: tuple[BlazeServer, Upstream, Upstream],
) -> None:
    """The error event is the stream's last: no ``[DONE]`` follows it
    (``shared/cases/stream-fallback-before-content.md``)."""
    server, a, b = pair
    a.control(mode="cut")
    b.control(mode="cut")
    with httpx.stream(
        "POST", f"{server.base_url}/v1/chat/completions", json={**BODY, "stream": True}
    ) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert "cut" in error["message"]
    finishes = [
        c["choices"][0]["finish_reason"] for c in map(json.loads, events[:-1]) if c["choices"]
    ]
    assert "stop" not in finishes
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="m", messages=BODY["messages"], stream=True):  # type: ignore[arg-type]
            pass


def test_all_upstreams_failing_gives_503_with_retry_after(
    pair: tuple[BlazeServer, Upstream, Upstream],
) -> None:
    server, a, b = pair
    a.control(mode="fail", status=503)
    b.control(mode="fail", status=503)
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        codes = [http.post("/v1/chat/completions", json=BODY).status_code for _ in range(4)]
        assert set(codes) == {503}
        response = http.post("/v1/chat/completions", json=BODY)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "no_healthy_deployment"
        assert 20 <= int(response.headers["retry-after"]) <= 30
        assert http.get("/ready").status_code == 503
        states = {d["breaker_state"] for d in http.get("/admin/deployments").json()["data"]}
        assert states == {"open"}


def test_upstream_400_is_passed_through_not_retried(
    pair: tuple[BlazeServer, Upstream, Upstream],
) -> None:
    server, a, b = pair
    a.control(mode="fail", status=400)
    b.control(mode="fail", status=400)
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="x", max_retries=0)
    for _ in range(5):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="m", messages=BODY["messages"])  # type: ignore[arg-type]
    assert a.requests() + b.requests() == 5
    data = httpx.get(f"{server.base_url}/admin/deployments").json()["data"]
    assert {d["breaker_state"] for d in data} == {"closed"}
