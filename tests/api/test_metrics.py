"""Issue 13: ``/metrics`` after a scripted mix of traffic, parsed with ``prometheus_client``'s
parser: exact counter deltas and histogram counts, the overhead header, and who may scrape.

The app runs in this process over real fake upstreams on loopback (``tests/unit/gateway``'s
``upstream`` fixture); keyed apps check ``blaze_rate_limited_total`` and the admin key.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from blaze_ai.config.schema import RuntimeConfig, Settings
from blaze_ai.devtools.fake_upstream import Behaviour
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway.build import build_gateway
from blaze_ai.observability.metrics import SPECS
from tests.api.conftest import asgi_client, serve_in_process
from tests.api.keyed import ADMIN_KEY, keyed_app, keyed_client, keyed_settings, new_key
from tests.leaks import no_leaks
from tests.unit.gateway.conftest import StartUpstream, leak_check, remote_settings, upstream

__all__ = ["leak_check", "upstream"]  # the fixtures, re-used

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "hi"}]
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    """Every sample of a ``/metrics`` body: (sample name, sorted labels) -> value."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Series, after: Series, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def scrape(http: httpx.AsyncClient) -> Series:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


@pytest.fixture
async def mixed(upstream: StartUpstream) -> AsyncIterator[httpx.AsyncClient]:
    """The app over three upstreams: ``m`` on ``ok``; ``r`` on ``bad`` (500) then ``ok``
    (round robin, one retry); ``limited`` on ``busy`` (429)."""
    _, url_ok = await upstream("ok")
    bad, url_bad = await upstream("bad")
    busy, url_busy = await upstream("busy")
    bad.behaviour = Behaviour(mode="fail", status=500)
    busy.behaviour = Behaviour(
        mode="fail", status=429, retry_after="1", error_type="rate_limit_error"
    )
    settings = remote_settings(
        [
            {"name": "m", "deployments": [url_ok]},
            {
                "name": "r",
                "deployments": [url_bad, url_ok],
                "strategy": "round_robin",
                "retry": {"num_retries": 1, "backoff_base_s": 0},
            },
            {"name": "limited", "deployments": [url_busy], "retry": {"num_retries": 0}},
        ]
    )
    async with AsyncExitStack() as stack:
        gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
        await stack.enter_async_context(no_leaks(gateway))
        app = await stack.enter_async_context(serve_in_process(settings, gateway))
        yield await stack.enter_async_context(asgi_client(app))


async def test_a_scripted_mix_moves_each_counter_by_exactly_its_share(
    mixed: httpx.AsyncClient,
) -> None:
    http = mixed
    before = await scrape(http)
    cached = {"model": "m", "messages": MESSAGES, "temperature": 0}
    started = time.perf_counter()
    first = await http.post(CHAT, json={"model": "m", "messages": MESSAGES, "temperature": 0.7})
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert first.status_code == 200
    overhead_ms = float(first.headers["x-blaze-overhead-ms"])
    assert 0 <= overhead_ms < elapsed_ms
    assert (await http.post(CHAT, json=cached)).headers["x-blaze-cache"] == "miss"
    assert (await http.post(CHAT, json=cached)).headers["x-blaze-cache"] == "hit-memory"
    bad = await http.post(CHAT, json={"model": "m", "messages": MESSAGES, "temperature": 9})
    assert bad.status_code == 400
    async with http.stream(
        "POST", CHAT, json={"model": "m", "messages": MESSAGES, "stream": True}
    ) as streamed:
        assert streamed.status_code == 200
        assert "x-blaze-overhead-ms" in streamed.headers
        chunks = [line async for line in streamed.aiter_lines() if line.startswith("data:")]
    assert chunks[-1] == "data: [DONE]"
    assert (await http.post(CHAT, json={"model": "r", "messages": MESSAGES})).status_code == 200
    limited = await http.post(CHAT, json={"model": "limited", "messages": MESSAGES})
    assert limited.status_code == 429
    after = await scrape(http)

    def d(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    requests = "blaze_requests_total"
    assert d(requests, model="m", endpoint=CHAT, outcome="success") == 4
    assert d(requests, model="m", endpoint=CHAT, outcome="caller_error") == 1
    assert d(requests, model="r", endpoint=CHAT, outcome="success") == 1
    assert d(requests, model="limited", endpoint=CHAT, outcome="provider_error") == 1
    assert d("blaze_errors_total", model="m", error_type="caller_invalid_request") == 1
    assert d("blaze_errors_total", model="limited", error_type="provider_rate_limited") == 1
    assert d("blaze_request_duration_seconds_count", model="m", endpoint=CHAT) == 5
    assert d("blaze_gateway_overhead_seconds_count", model="r") == 1
    assert d("blaze_time_to_first_token_seconds_count", model="m") == 1
    assert d("blaze_inter_token_latency_seconds_count", model="m") == 1
    # the fake upstream answers 5 prompt and 7 completion tokens; the hit counts no completion
    assert d("blaze_prompt_tokens_total", model="m", team="") == 5 * 4
    assert d("blaze_completion_tokens_total", model="m", team="") == 7 * 3
    assert d("blaze_cached_prompt_tokens_total", model="m", team="") == 5
    assert d("blaze_cache_requests_total", level="memory", result="hit") == 1
    assert d("blaze_cache_requests_total", level="memory", result="miss") == 1
    assert d("blaze_retries_total", model="r") == 1
    assert d("blaze_deployment_requests_total", model="r", deployment="r/0", outcome="failure") == 1
    assert d("blaze_deployment_requests_total", model="r", deployment="r/1", outcome="success") == 1
    assert d("blaze_deployment_latency_seconds_count", model="r", deployment="r/1") == 1
    assert d("blaze_deployment_latency_seconds_count", model="r", deployment="r/0") == 0
    assert value(after, "blaze_breaker_state", model="r", deployment="r/0") == 0  # closed
    assert value(after, "blaze_deployment_healthy", model="m", deployment="m/0") == 1
    assert value(after, "blaze_engine_state", model="m", deployment="m/0", state="ready") == 1
    assert value(after, "blaze_engine_state", model="m", deployment="m/0", state="failed") == 0
    assert value(after, "blaze_requests_in_progress") == 0


async def test_an_open_breaker_reads_2_and_counts_its_transition(
    upstream: StartUpstream,
) -> None:
    down, url = await upstream("down")
    down.behaviour = Behaviour(mode="fail", status=503)
    settings = remote_settings(
        [
            {
                "name": "m",
                "deployments": [url],
                "breaker": {"failure_threshold": 2},
                "retry": {"num_retries": 0},
            }
        ]
    )
    async with AsyncExitStack() as stack:
        gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
        await stack.enter_async_context(no_leaks(gateway))
        app = await stack.enter_async_context(serve_in_process(settings, gateway))
        http = await stack.enter_async_context(asgi_client(app))
        for _ in range(3):
            await http.post(CHAT, json={"model": "m", "messages": MESSAGES})
        after = await scrape(http)
    labels = {"model": "m", "deployment": "m/0"}
    assert value(after, "blaze_breaker_state", **labels) == 2
    assert value(after, "blaze_breaker_transitions_total", **labels, to="open") == 1
    assert (
        value(after, "blaze_errors_total", model="m", error_type="provider_no_healthy_deployment")
        == 1
    )


async def test_local_engines_report_batches_prefill_and_images(tiny_app: FastAPI) -> None:
    async with asgi_client(tiny_app) as http:
        before = await scrape(http)
        chat = {"model": "tiny", "messages": MESSAGES, "max_tokens": 3, "temperature": 0.5}
        assert (await http.post(CHAT, json=chat)).status_code == 200
        image = {"model": "digits", "prompt": "3", "response_format": "b64_json", "n": 2}
        assert (await http.post("/v1/images/generations", json=image)).status_code == 200
        after = await scrape(http)
    tiny = {"model": "tiny", "deployment": "tiny/0"}
    assert delta(before, after, "blaze_prefill_tokens_total", **tiny) > 0
    assert (("blaze_batch_size", tuple(sorted(tiny.items())))) in after
    assert delta(before, after, "blaze_images_total", model="digits") == 2
    digits = {"model": "digits", "deployment": "digits/0"}
    assert (("blaze_image_batch_size", tuple(sorted(digits.items())))) in after
    assert (("blaze_batch_size", tuple(sorted(digits.items())))) not in after
    assert delta(before, after, "blaze_requests_total", model="digits",
                 endpoint="/v1/images/generations", outcome="success") == 1  # fmt: skip


def _server(settings: Settings, host: str, public: bool = False) -> Settings:
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"host": host}),
            "metrics": settings.metrics.model_copy(update={"public": public}),
        }
    )


KeyedApp = Callable[..., Awaitable[FastAPI]]


@pytest.fixture
async def keyed(tiny_config: Path, tmp_path: Path) -> AsyncIterator[KeyedApp]:
    """``await keyed(host, public=False, **limits)`` -> a started app with auth on."""
    async with AsyncExitStack() as stack:
        count = 0

        async def start(host: str, public: bool = False) -> FastAPI:
            nonlocal count
            count += 1
            folder = tmp_path / str(count)
            folder.mkdir()
            settings = keyed_settings(tiny_config, folder)
            return await stack.enter_async_context(keyed_app(_server(settings, host, public)))

        yield start


async def test_metrics_are_public_on_loopback_and_the_admin_keys_elsewhere(
    keyed: KeyedApp,
) -> None:
    loopback = await keyed("127.0.0.1")
    async with asgi_client(loopback) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200
    network = await keyed("0.0.0.0")
    user = await new_key(network, "readers")
    async with asgi_client(network) as anonymous, keyed_client(network, user["key"]) as keyed_user:
        assert (await anonymous.get("/metrics")).status_code == 401
        refused = await keyed_user.get("/metrics")
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    async with keyed_client(network, ADMIN_KEY) as admin:
        assert (await admin.get("/metrics")).status_code == 200
    public = await keyed("0.0.0.0", public=True)
    async with asgi_client(public) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 200


async def test_a_key_over_its_rpm_counts_a_rate_limit_for_its_team(keyed: KeyedApp) -> None:
    app = await keyed("127.0.0.1")
    key = await new_key(app, "thrifty", rpm=1)
    chat: dict[str, Any] = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
    async with asgi_client(app) as anonymous, keyed_client(app, key["key"]) as client:
        before = await scrape(anonymous)
        assert (await client.post(CHAT, json=chat)).status_code == 200
        assert (await client.post(CHAT, json=chat)).status_code == 429
        after = await scrape(anonymous)
    assert delta(before, after, "blaze_rate_limited_total", team="thrifty", limit="rpm") == 1
    assert (
        delta(before, after, "blaze_errors_total", model="tiny", error_type="policy_rate_limited")
        == 1
    )
    assert delta(before, after, "blaze_requests_total", model="tiny", endpoint=CHAT,
                 outcome="policy_error") == 1  # fmt: skip
    assert delta(before, after, "blaze_completion_tokens_total", model="tiny", team="thrifty") > 0


async def test_with_metrics_off_there_is_no_metrics_route_nor_overhead_header(
    tiny_config: Path,
) -> None:
    from blaze_ai.config import load_settings

    settings = load_settings(tiny_config)
    settings = settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"enabled": False})}
    )
    gateway = build_gateway(settings, make_engine_factory(settings.runtime))
    async with serve_in_process(settings, gateway) as app, asgi_client(app) as http:
        assert (await http.get("/metrics")).status_code == 404
        assert (await http.get("/dashboard")).status_code == 404
        chat = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
        answer = await http.post(CHAT, json=chat)
        assert answer.status_code == 200 and "x-blaze-overhead-ms" not in answer.headers


async def test_a_streamed_attempt_is_timed_to_its_last_chunk(upstream: StartUpstream) -> None:
    """Review of issue 13: ``blaze_deployment_latency_seconds`` said "time to first token for
    streams", but a stream's attempt succeeds, and is timed, when its last chunk is through:
    the help and README now say so."""
    slow, url = await upstream("slow")
    slow.behaviour = Behaviour(mode="trickle", content_chunks=3, delay_s=0.2)
    settings = remote_settings([{"name": "m", "deployments": [url]}])
    gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
    async with (
        no_leaks(gateway),
        serve_in_process(settings, gateway) as app,
        asgi_client(app) as http,
    ):
        before = await scrape(http)
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with http.stream("POST", CHAT, json=body) as streamed:
            assert [line async for line in streamed.aiter_lines()][-2] == "data: [DONE]"
        after = await scrape(http)
    attempt_s = delta(before, after, "blaze_deployment_latency_seconds_sum", model="m",
                      deployment="m/0")  # fmt: skip
    first_token_s = delta(before, after, "blaze_time_to_first_token_seconds_sum", model="m")
    assert first_token_s < 0.2 <= 0.4 <= attempt_s
    assert "until its last chunk" in SPECS["blaze_deployment_latency_seconds"].help
