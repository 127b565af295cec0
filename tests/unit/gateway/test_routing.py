"""Routing over real HTTP upstreams: strategies, retries, breakers, Retry-After, fallbacks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from blaze_ai.devtools.fake_upstream import Behaviour
from blaze_ai.errors import (
    EngineGenerationError,
    EngineUnavailableError,
    InvalidRequestError,
    NoHealthyDeploymentError,
)
from blaze_ai.gateway import Gateway, RoutingContext
from blaze_ai.tenancy.meter import Meter
from blaze_ai.tenancy.types import Principal
from blaze_ai.types import ChatRequest, Message, TextChunk
from tests.fakes import FakeTimer
from tests.unit.gateway.conftest import StartUpstream, remote_settings

GatewayFor = Callable[..., Awaitable[Gateway]]


def ask(model: str = "m", user: str | None = None) -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", "hi"),), user=user)


async def answer(gateway: Gateway, req: ChatRequest | None = None, **ctx: object) -> str:
    result = await gateway.generate(req or ask(), RoutingContext(**ctx))  # type: ignore[arg-type]
    return result.choices[0].text.split(":")[0]


async def test_least_request_spreads_sequential_requests(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "least_request", "deployments": [url_a, url_b]}])
    )
    for _ in range(30):
        await answer(gw)
    assert 10 <= a.requests <= 20 and 10 <= b.requests <= 20
    assert a.requests + b.requests == 30


async def test_weighted_round_robin_1_to_2(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    deployments = [{"base_url": url_a, "weight": 1}, {"base_url": url_b, "weight": 2}]
    gw = await gateway_for(
        remote_settings(
            [{"name": "m", "strategy": "weighted_round_robin", "deployments": deployments}]
        )
    )
    for _ in range(600):
        await answer(gw)
    assert abs(a.requests / 600 - 1 / 3) <= 0.05
    assert abs(b.requests / 600 - 2 / 3) <= 0.05


async def test_ring_hash_keeps_a_session_on_one_deployment(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    urls = [(await upstream(n))[1] for n in ("a", "b", "c")]
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "ring_hash", "deployments": urls}])
    )
    owners = {}
    for session in range(12):
        seen = {await answer(gw, headers={"x-session-id": f"s{session}"}) for _ in range(5)}
        assert len(seen) == 1
        owners[session] = seen.pop()
    assert len(set(owners.values())) > 1
    # without the header, the user field is the key; then the client IP
    users = {await answer(gw, ask(user="alice")) for _ in range(5)}
    ips = {await answer(gw, client_ip="10.1.2.3") for _ in range(5)}
    assert len(users) == 1 and len(ips) == 1


async def test_latency_ewma_avoids_a_10x_slower_upstream(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (fast, url_fast), (slow, url_slow) = await upstream("fast"), await upstream("slow")
    fast.behaviour = Behaviour(mode="slow", delay_s=0.005)
    slow.behaviour = Behaviour(mode="slow", delay_s=0.05)
    gw = await gateway_for(
        remote_settings(
            [{"name": "m", "strategy": "latency_ewma", "deployments": [url_fast, url_slow]}]
        )
    )
    for _ in range(60):
        await answer(gw)
    assert slow.requests < 0.25 * 60 < fast.requests


async def test_client_error_is_not_retried_and_breaker_stays_closed(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = b.behaviour = Behaviour(mode="fail", status=400)
    gw = await gateway_for(remote_settings([{"name": "m", "deployments": [url_a, url_b]}]))
    for _ in range(8):
        with pytest.raises(InvalidRequestError, match="scripted failure 400"):
            await gw.generate(ask())
    assert a.requests + b.requests == 8  # one attempt per request
    assert {s.breaker_state for s in gw.deployment_status()} == {"closed"}
    assert all(s.failures == 0 for s in gw.deployment_status())


async def test_server_error_is_retried_on_another_deployment(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="fail", status=500)
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "round_robin", "deployments": [url_a, url_b]}])
    )
    assert [await answer(gw) for _ in range(4)] == ["b"] * 4
    status = {s.name: s for s in gw.deployment_status()}
    assert status["m/0"].failures >= 1 and status["m/0"].last_error


async def test_hung_upstream_fails_over_within_its_timeout(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="hang")
    deployments = [{"base_url": url_a, "timeout_s": 0.5}, {"base_url": url_b, "timeout_s": 0.5}]
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "round_robin", "deployments": deployments}])
    )
    started = time.perf_counter()
    assert await answer(gw) == "b"  # round robin tried a first
    assert time.perf_counter() - started < 1.5


async def test_open_breakers_give_503_with_retry_after(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    a, url_a = await upstream("a")
    a.behaviour = Behaviour(mode="fail", status=503)
    model = {
        "name": "m",
        "deployments": [url_a],
        "breaker": {"failure_threshold": 2, "cooldown_s": 30},
        "retry": {"num_retries": 0},
    }
    gw = await gateway_for(remote_settings([model]))
    for _ in range(2):
        with pytest.raises(Exception):  # noqa: B017 - the upstream's 503, as a Blaze error
            await gw.generate(ask())
    assert not gw.ready
    with pytest.raises(NoHealthyDeploymentError) as info:
        await gw.generate(ask())
    assert info.value.status_code == 503
    assert 25 < (info.value.retry_after_s or 0) <= 30
    assert a.requests == 2  # the open breaker kept the third request away


async def test_upstream_retry_after_is_honoured(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="fail", status=429, retry_after="30")
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "round_robin", "deployments": [url_a, url_b]}])
    )
    assert [await answer(gw) for _ in range(6)] == ["b"] * 6
    assert a.requests == 1


async def test_fallback_model_serves_when_the_first_cannot(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="fail", status=502)
    models = [
        {
            "name": "big",
            "deployments": [url_a],
            "fallbacks": ["small"],
            "retry": {"num_retries": 1, "backoff_base_s": 0},
        },
        {"name": "small", "deployments": [url_b]},
    ]
    gw = await gateway_for(remote_settings(models))
    assert await answer(gw, ask("big")) == "b"


async def test_stream_retried_before_first_item_only(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="fail", status=500)
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "round_robin", "deployments": [url_a, url_b]}])
    )
    items = [item async for item in gw.stream(ask())]
    text = "".join(i.text for i in items if isinstance(i, TextChunk))
    assert text.startswith("b:")
    a.behaviour = Behaviour()
    b.behaviour = Behaviour(mode="cut")
    a.behaviour = Behaviour(mode="cut")
    got: list[str] = []
    with pytest.raises(EngineGenerationError, match="cut"):
        async for item in gw.stream(ask()):
            if isinstance(item, TextChunk):
                got.append(item.text)
    assert got  # some text arrived before the cut, and the cut was not retried silently
    assert a.requests + b.requests == 3


async def test_health_checks_take_a_failing_upstream_out_and_back(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    """On a fake clock: each ``advance`` runs one probe of every deployment, no real waiting."""
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    health = {"interval_s": 10, "timeout_s": 0.5, "unhealthy_threshold": 2, "healthy_threshold": 2}
    timer = FakeTimer()
    gw = await gateway_for(
        remote_settings([{"name": "m", "deployments": [url_a, url_b], "health_check": health}]),
        timer,
    )
    await timer.until_sleeping(3)  # two health loops and the supervisor
    a.behaviour = Behaviour(mode="fail", status=503)

    async def healthy(name: str) -> bool:
        return next(s.healthy for s in gw.deployment_status() if s.name == name)

    await timer.advance(10)
    assert await healthy("m/0")  # one failure is under the threshold
    await timer.advance(10)
    assert not await healthy("m/0")
    a.behaviour = Behaviour()
    await timer.advance(10)
    assert not await healthy("m/0")
    await timer.advance(10)
    assert await healthy("m/0")


async def test_retry_waits_its_back_off_on_the_injected_clock(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    (a, url_a), (_b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="fail", status=500)
    retry = {"num_retries": 1, "backoff_base_s": 4.0, "backoff_max_s": 8.0}
    model = {"name": "m", "strategy": "round_robin", "deployments": [url_a, url_b], "retry": retry}
    model["health_check"] = {"enabled": False}
    timer = FakeTimer()
    gw = await gateway_for(remote_settings([model]), timer)
    await timer.until_sleeping(1)  # the supervisor
    request = asyncio.create_task(answer(gw))
    await timer.until_sleeping(2)  # the back-off before the retry on b
    assert not request.done()
    assert 0 <= timer.requested[-1] <= 4.0  # full jitter under the first cap
    await timer.advance(4.0, then_sleeping=1)  # the back-off ends; the supervisor sleeps on
    assert await request == "b"


async def test_api_key_from_the_environment_is_sent_upstream(
    upstream: StartUpstream, gateway_for: GatewayFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, url_a = await upstream("a")
    monkeypatch.setenv("BLAZE_TEST_UPSTREAM_KEY", "sk-test-123")
    deployment = {"base_url": url_a, "api_key_env": "BLAZE_TEST_UPSTREAM_KEY"}
    gw = await gateway_for(remote_settings([{"name": "m", "deployments": [deployment]}]))
    await answer(gw)
    assert a.last_authorization == "Bearer sk-test-123"


async def test_missing_api_key_variable_fails_the_deployment_clearly(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    _, url_a = await upstream("a")
    deployment = {"base_url": url_a, "api_key_env": "BLAZE_TEST_NO_SUCH_VARIABLE"}
    gw = await gateway_for(remote_settings([{"name": "m", "deployments": [deployment]}]))
    assert not gw.ready
    (status,) = gw.deployment_status()
    assert status.engine_state == "failed"


async def test_max_concurrency_spills_over_to_the_next_deployment(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    import asyncio

    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = b.behaviour = Behaviour(mode="slow", delay_s=0.2)
    deployments = [{"base_url": url_a, "max_concurrency": 1}, {"base_url": url_b}]
    gw = await gateway_for(
        remote_settings([{"name": "m", "strategy": "round_robin", "deployments": deployments}])
    )
    await asyncio.gather(*(answer(gw) for _ in range(6)))
    assert a.max_in_flight == 1
    assert b.requests >= 5


async def test_a_fallback_the_key_may_not_use_is_skipped(
    upstream: StartUpstream, gateway_for: GatewayFor
) -> None:
    """Review of issue 12: a key allowed only ``big`` was served by its fallback ``small``
    once ``big`` failed."""
    (a, url_a), (b, url_b) = await upstream("a"), await upstream("b")
    a.behaviour = Behaviour(mode="fail", status=502)
    models = [
        {
            "name": "big",
            "deployments": [url_a],
            "fallbacks": ["small"],
            "retry": {"num_retries": 0, "backoff_base_s": 0},
        },
        {"name": "small", "deployments": [url_b]},
    ]
    gw = await gateway_for(remote_settings(models))
    only_big = RoutingContext(meter=Meter(Principal(key_id="sk-blz-k", team="t", models=("big",))))
    with pytest.raises(EngineUnavailableError, match="502"):  # big's own failure
        await gw.generate(ask("big"), only_big)
    assert b.requests == 0
    both = RoutingContext(meter=Meter(Principal(key_id="sk-blz-k", team="t", models=("b*", "s*"))))
    assert (await gw.generate(ask("big"), both)).choices[0].text.startswith("b:")
