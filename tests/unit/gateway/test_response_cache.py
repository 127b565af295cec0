"""The gateway's cache step with a scripted engine: what is looked up, stored and replayed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from blaze_ai.config.schema import ModelConfig, RetryConfig, Settings
from blaze_ai.engines.base import EngineLoad, EngineState
from blaze_ai.errors import EngineGenerationError
from blaze_ai.gateway import Deployment, Gateway, ModelGroup
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.response_cache import ResponseCache
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.streams import StreamCollector, replay
from blaze_ai.types import (
    CacheDirectives,
    CacheInfo,
    CacheStatus,
    ChatRequest,
    Choice,
    FinishReason,
    GatewayStreamItem,
    Message,
    SamplingParams,
    StreamItem,
    TextChunk,
    TextRequest,
    TextResult,
    Usage,
)

GREEDY = SamplingParams(temperature=0.0, max_tokens=5)


@dataclass
class CountingEngine:
    """Answers ``answer-<k>`` for its k-th generation, so a replay is told from a new answer."""

    name: str = "m/0"
    state: EngineState = EngineState.READY
    context_window: int = 100
    generations: int = 0
    fail: BaseException | None = None
    fail_mid_stream: bool = False

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def check_health(self) -> None: ...

    def load(self) -> EngineLoad:
        return EngineLoad(0, 0)

    def _result(self, req: TextRequest) -> TextResult:
        self.generations += 1
        choices = tuple(
            Choice(i, f"answer-{self.generations}.{i}", FinishReason.LENGTH)
            for i in range(req.params.n)
        )
        return TextResult(choices, Usage(7, 3 * req.params.n))

    async def generate(self, req: TextRequest, deadline: Deadline) -> TextResult:
        if self.fail is not None:
            raise self.fail
        return self._result(req)

    async def stream(self, req: TextRequest, deadline: Deadline) -> AsyncIterator[StreamItem]:
        if self.fail is not None:
            raise self.fail
        result = self._result(req)
        for choice in result.choices:
            yield TextChunk(choice.index, choice.text[:4])
            if self.fail_mid_stream:
                raise EngineGenerationError("broke")
            yield TextChunk(choice.index, choice.text[4:], choice.finish_reason)
        yield result.usage


def make_gateway(
    engine: CountingEngine, *, cache: dict[str, object] | None = None, **model_cache: object
) -> Gateway:
    settings = Settings(
        models=[
            ModelConfig.model_validate(
                {
                    "name": "m",
                    "aliases": ["alias"],
                    "deployments": [{"model": "/x"}],
                    "cache": model_cache,
                }
            )
        ],
        cache=cache or {},
    )
    deployments = (Deployment("m/0", engine),)  # type: ignore[arg-type]
    # one attempt per request: these tests are about the cache step, not retries
    group = ModelGroup("m", ("alias",), deployments, created=0, retry=RetryConfig(num_retries=0))
    return Gateway(
        [group],
        admission=Admission(10),
        request_timeout_s=5,
        cache=ResponseCache.from_settings(settings),
    )


def chat(text: str = "hi", params: SamplingParams = GREEDY, **fields: object) -> ChatRequest:
    return ChatRequest("m", (Message("user", text),), params, **fields)  # type: ignore[arg-type]


async def collect(stream: AsyncIterator[GatewayStreamItem]) -> list[GatewayStreamItem]:
    return [item async for item in stream]


@pytest.fixture
async def engine() -> CountingEngine:
    return CountingEngine()


async def test_same_request_twice_is_a_hit_with_cached_tokens(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    await gw.start()
    first = await gw.generate(chat())
    second = await gw.generate(chat(request_id="other"))
    assert first.cache_status is CacheStatus.MISS and second.cache_status is CacheStatus.HIT_MEMORY
    assert second.choices == first.choices
    assert first.usage.cached_tokens == 0
    assert second.usage == Usage(7, 3, cached_tokens=7)
    assert engine.generations == 1
    figures = await gw.cache.stats()  # type: ignore[union-attr]
    assert figures.outcomes["miss"] == 1 and figures.outcomes["hit-memory"] == 1


async def test_alias_and_name_share_entries(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    await gw.generate(chat())
    assert (
        await gw.generate(replace(chat(), model="alias"))
    ).cache_status is CacheStatus.HIT_MEMORY


async def test_sampled_request_is_not_cached_by_default(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    sampled = SamplingParams()  # temperature 1, no seed: OpenAI's defaults
    for _ in range(2):
        assert (await gw.generate(chat(params=sampled))).cache_status is CacheStatus.BYPASS
    assert engine.generations == 2
    seeded = SamplingParams(seed=3)
    await gw.generate(chat(params=seeded))
    assert (await gw.generate(chat(params=seeded))).cache_status is CacheStatus.HIT_MEMORY


async def test_policy_all_caches_sampled_requests_and_off_caches_nothing() -> None:
    wide = make_gateway(CountingEngine(), policy="all")
    await wide.generate(chat(params=SamplingParams()))
    assert (
        await wide.generate(chat(params=SamplingParams()))
    ).cache_status is CacheStatus.HIT_MEMORY
    off = make_gateway(CountingEngine(), policy="off")
    await off.generate(chat())
    assert (await off.generate(chat())).cache_status is CacheStatus.BYPASS


async def test_tenants_never_share_unless_the_model_is_shared() -> None:
    private = make_gateway(CountingEngine())
    await private.generate(chat(tenant="team-a"))
    assert (await private.generate(chat(tenant="team-b"))).cache_status is CacheStatus.MISS
    assert (await private.generate(chat(tenant="team-a"))).cache_status is CacheStatus.HIT_MEMORY
    shared = make_gateway(CountingEngine(), shared=True)
    await shared.generate(chat(tenant="team-a"))
    assert (await shared.generate(chat(tenant="team-b"))).cache_status is CacheStatus.HIT_MEMORY


async def test_no_cache_and_no_store(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    no_store = await gw.generate(chat(cache=CacheDirectives(no_store=True)))
    assert no_store.cache_status is CacheStatus.MISS
    assert (await gw.generate(chat())).cache_status is CacheStatus.MISS  # nothing was stored
    skip = await gw.generate(chat(cache=CacheDirectives(no_cache=True)))
    assert skip.cache_status is CacheStatus.BYPASS
    assert skip.choices[0].text == "answer-3.0"  # a fresh answer, stored over the old one
    assert (await gw.generate(chat())).choices[0].text == "answer-3.0"


async def test_ttl_from_the_request_or_the_model() -> None:
    from tests.fakes import FakeClock

    engine = CountingEngine()
    gw = make_gateway(engine, ttl_s=100)
    clock = FakeClock(1000.0)
    caching = gw.cache
    assert caching is not None
    caching._clock = clock  # type: ignore[attr-defined]
    caching._cache._levels[0]._clock = clock  # type: ignore[attr-defined]
    await gw.generate(chat("model ttl"))
    await gw.generate(chat("own ttl", cache=CacheDirectives(ttl_s=10)))
    clock.advance(50)
    assert (await gw.generate(chat("model ttl"))).cache_status is CacheStatus.HIT_MEMORY
    assert (await gw.generate(chat("own ttl"))).cache_status is CacheStatus.MISS


async def test_errors_are_not_stored(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    engine.fail = EngineGenerationError("nope")
    with pytest.raises(EngineGenerationError):
        await gw.generate(chat())
    with pytest.raises(EngineGenerationError):
        await collect(gw.stream(chat()))
    engine.fail = None
    assert (await gw.generate(chat())).cache_status is CacheStatus.MISS


async def test_cut_streams_are_not_stored(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    engine.fail_mid_stream = True
    with pytest.raises(EngineGenerationError):
        await collect(gw.stream(chat()))
    engine.fail_mid_stream = False
    stream = gw.stream(chat())
    assert await anext(stream) == CacheInfo(CacheStatus.MISS)
    await anext(stream)
    await stream.aclose()  # the client went away
    assert (await gw.generate(chat())).cache_status is CacheStatus.MISS


async def test_completed_stream_is_stored_and_replayed(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    params = replace(GREEDY, n=2)
    live = await collect(gw.stream(chat(params=params)))
    assert live[0] == CacheInfo(CacheStatus.MISS)
    whole = await gw.generate(chat(params=params))
    assert whole.cache_status is CacheStatus.HIT_MEMORY
    assert [c.text for c in whole.choices] == ["answer-1.0", "answer-1.1"]
    replayed = await collect(gw.stream(chat(params=params)))
    assert replayed[0] == CacheInfo(CacheStatus.HIT_MEMORY)
    collector = StreamCollector(2)
    for item in replayed[1:]:
        assert not isinstance(item, CacheInfo)
        collector.add(item)
    assert collector.result() == replace(whole, cache_status=None)
    assert engine.generations == 1


async def test_hits_are_served_while_no_deployment_is_ready(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    await gw.generate(chat())
    engine.state = EngineState.FAILED
    assert (await gw.generate(chat())).cache_status is CacheStatus.HIT_MEMORY


async def test_concurrent_identical_misses_all_succeed(engine: CountingEngine) -> None:
    gw = make_gateway(engine)
    results = await asyncio.gather(*(gw.generate(chat()) for _ in range(5)))
    assert all(r.choices for r in results)


def test_replay_and_collector_round_trip() -> None:
    result = TextResult(
        (Choice(0, "ab", FinishReason.STOP), Choice(1, "", FinishReason.LENGTH)), Usage(2, 1)
    )
    collector = StreamCollector(2)
    for item in replay(result):
        collector.add(item)
    assert collector.result() == result
    partial = StreamCollector(2)
    partial.add(TextChunk(0, "ab", FinishReason.STOP))
    partial.add(Usage(2, 1))
    assert partial.result() is None


async def test_no_cache_level_means_no_cache() -> None:
    gw = make_gateway(CountingEngine(), cache={"memory": None})
    assert gw.cache is None
    assert (await gw.generate(chat())).cache_status is None
    items = await collect(gw.stream(chat()))
    assert isinstance(items[0], TextChunk)
