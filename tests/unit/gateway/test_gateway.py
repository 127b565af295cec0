"""Gateway: model resolution, admission, and choosing among deployments (scripted engines)."""

from __future__ import annotations

import asyncio

import pytest

from blaze_ai.engines.base import EngineState
from blaze_ai.errors import (
    BackPressureError,
    InvalidRequestError,
    ModelNotFoundError,
    NoHealthyDeploymentError,
)
from blaze_ai.gateway import Deployment, Gateway, ModelGroup
from blaze_ai.gateway.admission import Admission
from blaze_ai.types import ChatRequest, ImageRequest, Message, TextChunk
from tests.fakes import ScriptedEngine, ScriptedImageEngine


def request(model: str = "m", rid: str = "r") -> ChatRequest:
    return ChatRequest(model=model, messages=(Message("user", "hi"),), request_id=rid)


def gateway(*engines: ScriptedEngine, max_pending: int = 10) -> Gateway:
    group = ModelGroup("m", ("alias",), tuple(Deployment(e.name, e) for e in engines), created=0)  # type: ignore[arg-type]
    return Gateway([group], admission=Admission(max_pending), request_timeout_s=5)


async def test_resolves_names_and_aliases() -> None:
    gw = gateway(ScriptedEngine("a"))
    assert (await gw.generate(request("alias"))).choices[0].text == "a"
    with pytest.raises(ModelNotFoundError) as info:
        await gw.generate(request("other"))
    assert info.value.param == "model"


async def test_skips_engines_that_are_not_ready() -> None:
    loading = ScriptedEngine("loading", state=EngineState.STARTING)
    gw = gateway(loading, ScriptedEngine("ready"))
    for _ in range(5):
        assert (await gw.generate(request())).choices[0].text == "ready"
    assert gw.ready


async def test_no_ready_engine_is_503_with_retry_after() -> None:
    gw = gateway(ScriptedEngine("x", state=EngineState.FAILED))
    assert not gw.ready
    with pytest.raises(NoHealthyDeploymentError) as info:
        await gw.generate(request())
    assert info.value.status_code == 503 and info.value.retry_after_s


async def test_prefers_the_least_busy_engine() -> None:
    busy, idle = ScriptedEngine("busy", in_flight=3), ScriptedEngine("idle")
    gw = gateway(busy, idle)
    assert (await gw.generate(request())).choices[0].text == "idle"


async def test_admission_refuses_beyond_the_bound_and_frees_slots() -> None:
    gate = asyncio.Event()
    gw = gateway(ScriptedEngine("a", gate=gate), max_pending=2)
    held = [asyncio.create_task(gw.generate(request())) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(BackPressureError) as info:
        await gw.generate(request())
    assert info.value.status_code == 429 and info.value.retry_after_s
    gate.set()
    await asyncio.gather(*held)
    assert (await gw.generate(request())).choices[0].text == "a"


async def test_stream_holds_a_slot_until_closed() -> None:
    gw = gateway(ScriptedEngine("a"), max_pending=1)
    stream = gw.stream(request())
    assert isinstance(await anext(stream), TextChunk)
    with pytest.raises(BackPressureError):
        await gw.generate(request())
    await stream.aclose()
    assert (await gw.generate(request())).choices[0].text == "a"


def mixed_gateway() -> tuple[Gateway, ScriptedImageEngine]:
    painter = ScriptedImageEngine("painter")
    groups = [
        ModelGroup("chat", (), (Deployment("chat/0", ScriptedEngine("talker")),), created=0),  # type: ignore[arg-type]
        ModelGroup("draw", ("art",), (Deployment("draw/0", painter),), created=0),  # type: ignore[arg-type]
    ]
    return Gateway(groups, admission=Admission(10), request_timeout_s=5), painter


async def test_images_go_to_the_image_engine() -> None:
    gw, painter = mixed_gateway()
    result = await gw.generate_images(ImageRequest(model="art", prompt="a cat", n=2))
    assert result.images == (b"painter", b"painter")
    assert [c.prompt for c in painter.calls] == ["a cat"]


async def test_asking_a_model_for_the_other_kind_is_a_400_naming_model() -> None:
    gw, painter = mixed_gateway()
    with pytest.raises(InvalidRequestError, match="generates images") as info:
        await gw.generate(request("draw"))
    assert info.value.param == "model"
    with pytest.raises(InvalidRequestError, match="generates images"):
        await anext(gw.stream(request("draw")))
    with pytest.raises(InvalidRequestError, match="generates text") as info:
        await gw.generate_images(ImageRequest(model="chat", prompt="a cat"))
    assert info.value.param == "model" and info.value.status_code == 400
    assert not painter.calls


async def test_a_cancelled_request_is_not_retried_and_counts_neither_way() -> None:
    """The router's explicit cancellation branch: a client that goes away ends the attempt
    without a verdict; it is never retried on another deployment nor held against the first."""
    gate = asyncio.Event()
    first, second = ScriptedEngine("a", gate=gate), ScriptedEngine("b", gate=gate)
    gw = gateway(first, second)
    task = asyncio.create_task(gw.generate(request()))
    while not (first.calls or second.calls):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(first.calls) + len(second.calls) == 1  # no retry elsewhere
    status = gw.deployment_status()
    assert all(s.failures == 0 and s.breaker_state == "closed" for s in status)
    assert sum(s.client_disconnects_total for s in status) == 1  # counted once, as a hang-up
    assert all(s.in_flight == 0 for s in status)
    assert gw.admission.pending == 0


async def test_a_closed_stream_releases_its_attempt() -> None:
    gw = gateway(ScriptedEngine("a"))
    items = gw.stream(request())
    assert isinstance(await anext(items), TextChunk)
    await items.aclose()  # type: ignore[attr-defined]
    (status,) = gw.deployment_status()
    assert (status.in_flight, status.failures, status.breaker_state) == (0, 0, "closed")
    assert status.client_disconnects_total == 1  # its consumer went away
    assert gw.admission.pending == 0
