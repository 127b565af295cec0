"""Continuous batching in the transformers LLM engine, on a tiny random Llama.

Some tests pace the batching thread with a forward pre-hook on the real model (``StepGate``):
each forward pass (a prefill or a decoding step) waits for a permit, so a test can tell exactly
what happens at each step.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import LoadedModel, load_causal_lm
from blaze_ai.engines.llm.scheduler import BatchScheduler
from blaze_ai.errors import (
    BackPressureError,
    EngineGenerationError,
    EngineUnavailableError,
    InvalidRequestError,
)
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ChatRequest, FinishReason, Message, SamplingParams, Usage

from .gates import StepGate

PROMPTS = [
    "Hello world",
    "The capital of France is",
    "A quick brown fox jumps over the lazy dog; numbers 0 1 2 3",
    "Blaze serves language models",
    "How are you today? I am fine, thank you.",
    "Rome",
    "Ünïcödé ✓ 東京 🙂 and more text to make this prompt longer than the others",
    "numbers 9 8 7",
]


def chat(text: str = "Hello world", **params: Any) -> ChatRequest:
    return ChatRequest(
        model="tiny", messages=(Message("user", text),), params=SamplingParams(**params)
    )


def soon() -> Deadline:
    return Deadline.after(60)


async def make_engine(
    folder: Path, cache: Path, *, loader: Any = load_causal_lm, **config: Any
) -> TransformersLLMEngine:
    engine = TransformersLLMEngine(
        "tiny/0", LLMDeploymentConfig(model=str(folder), **config), cache_dir=cache, loader=loader
    )
    await engine.start()
    return engine


@pytest.fixture(scope="module")
async def engine(
    tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TransformersLLMEngine]:
    engine = await make_engine(tiny_llama_dir, tmp_path_factory.mktemp("cache"), max_batch_size=16)
    yield engine
    await engine.stop()


async def make_gated_engine(
    folder: Path, cache: Path, **config: Any
) -> tuple[TransformersLLMEngine, list[StepGate]]:
    """An engine whose forward passes each wait for a permit of its ``StepGate``."""
    gates: list[StepGate] = []

    def loader(config: LLMDeploymentConfig, cache_dir: Path) -> LoadedModel:
        loaded = load_causal_lm(config, cache_dir)
        gates.append(StepGate(loaded.model))
        return loaded

    engine = await make_engine(folder, cache, loader=loader, **config)
    return engine, gates


@pytest.fixture
async def gated(
    tiny_llama_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[TransformersLLMEngine, list[StepGate]]]:
    engine, gates = await make_gated_engine(tiny_llama_dir, tmp_path, max_batch_size=4, max_queue=3)
    yield engine, gates
    gates[0].release()
    await engine.stop()


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in stream]


async def test_16_concurrent_requests_exact_counts_and_finish_reasons(
    engine: TransformersLLMEngine,
) -> None:
    reference = (await engine.generate(chat(temperature=0, max_tokens=30), soon())).choices[0].text
    stop = reference[12:15]
    assert stop.strip(), f"pick another slice of {reference!r}"
    reqs = [chat(PROMPTS[i % 8], temperature=0, max_tokens=5 + 3 * i) for i in range(15)]
    reqs.append(chat(temperature=0, max_tokens=30, stop=(stop,)))
    steps_before = engine.batch_stats().steps_total
    results = await asyncio.gather(*(engine.generate(r, soon()) for r in reqs))
    for i, result in enumerate(results[:15]):
        assert result.usage.completion_tokens == 5 + 3 * i
        assert result.choices[0].finish_reason is FinishReason.LENGTH
    stopped = results[15].choices[0]
    assert stopped.finish_reason is FinishReason.STOP
    assert stopped.text == reference[: reference.index(stop)]
    # decoded together: far fewer steps than tokens (one step serves every sequence)
    steps = engine.batch_stats().steps_total - steps_before
    assert steps < sum(r.usage.completion_tokens for r in results) / 4
    assert engine.load().in_flight == 0 and engine.load().batch_size == 0


async def test_greedy_output_is_the_same_alone_and_batched(engine: TransformersLLMEngine) -> None:
    reqs = [chat(p, temperature=0, max_tokens=40) for p in PROMPTS]
    alone = [(await engine.generate(r, soon())).choices[0].text for r in reqs]
    together = await asyncio.gather(*(engine.generate(r, soon()) for r in reqs))
    assert [r.choices[0].text for r in together] == alone
    assert len(set(alone)) > 4  # different prompts, different texts


async def test_n_sequences_share_one_prefill_and_stay_exact(engine: TransformersLLMEngine) -> None:
    greedy = await engine.generate(chat(temperature=0, max_tokens=9, n=3), soon())
    assert len({c.text for c in greedy.choices}) == 1
    assert greedy.usage.completion_tokens == 27


async def test_a_request_joins_a_running_batch(engine: TransformersLLMEngine) -> None:
    long_stream = engine.stream(chat(temperature=0, max_tokens=200), soon())
    await anext(long_stream)
    short = await engine.generate(chat("Rome", temperature=0, max_tokens=5), soon())
    assert short.usage.completion_tokens == 5
    assert engine.load().in_flight == 1  # the long request is still decoding
    rest = await collect(long_stream)
    assert isinstance(rest[-1], Usage) and rest[-1].completion_tokens == 200


async def test_joining_request_streams_before_the_long_ones_finish(gated: Any) -> None:
    engine, gates = gated
    gate = gates[0]
    longs = [
        asyncio.create_task(engine.generate(chat(p, temperature=0, max_tokens=50), soon()))
        for p in PROMPTS[:2]
    ]
    for _ in range(6):  # two prefills and four steps
        await gate.step()
    assert engine.load().batch_size == 2
    short = asyncio.create_task(
        collect(engine.stream(chat("Rome", temperature=0, max_tokens=3), soon()))
    )
    await until(lambda: engine.load().queue_depth == 1)
    for _ in range(4):  # the step under way, its prefill (first token), two steps
        await gate.step()
    items = await asyncio.wait_for(short, 5)
    assert isinstance(items[-1], Usage) and items[-1].completion_tokens == 3
    assert engine.load().batch_size == 2
    assert not any(task.done() for task in longs)
    gate.release()
    assert [r.usage.completion_tokens for r in await asyncio.gather(*longs)] == [50, 50]


async def test_cancelled_request_frees_its_row_within_one_step(gated: Any) -> None:
    engine, gates = gated
    gate = gates[0]
    keep = asyncio.create_task(engine.generate(chat(temperature=0, max_tokens=40), soon()))
    leaving = engine.stream(chat("Rome", temperature=0, max_tokens=40), soon())
    first = asyncio.create_task(anext(leaving))
    for _ in range(4):
        await gate.step()
    await asyncio.wait_for(first, 5)
    before = engine.batch_stats()
    assert before.batch_size == 2
    await leaving.aclose()  # the client goes away
    await gate.step()  # at most the step already under way still decodes its row
    after = engine.batch_stats()
    assert after.cancelled_total == before.cancelled_total + 1
    assert after.batch_size == 1
    assert after.steps_total <= before.steps_total + 1
    gate.release()
    assert (await keep).usage.completion_tokens == 40


async def test_full_queue_refuses_at_once_with_retry_after(gated: Any) -> None:
    engine, gates = gated  # max_batch_size=4, max_queue=3
    gate = gates[0]
    running = [
        asyncio.create_task(engine.generate(chat(p, temperature=0, max_tokens=20), soon()))
        for p in PROMPTS[:4]
    ]
    await until(lambda: engine.load().in_flight == 4)
    for _ in range(5):  # four prefills, then the first step waits at the gate
        await gate.step()
    assert engine.load().batch_size == 4
    more = [
        asyncio.create_task(engine.generate(chat(temperature=0, max_tokens=5), soon()))
        for _ in range(10)
    ]
    await until(lambda: sum(t.done() for t in more) == 7)
    refused = [t for t in more if t.done()]
    assert all(isinstance(t.exception(), BackPressureError) for t in refused)
    assert {t.exception().retry_after_s for t in refused} == {1.0}  # type: ignore[union-attr]
    stats = engine.batch_stats()
    assert (stats.queue_depth, stats.rejected_total) == (3, 7)
    gate.release()
    accepted = await asyncio.gather(*[t for t in more if t not in refused])
    assert [r.usage.completion_tokens for r in accepted] == [5, 5, 5]
    assert [r.usage.completion_tokens for r in await asyncio.gather(*running)] == [20] * 4


async def test_bad_request_in_a_batch_fails_alone(engine: TransformersLLMEngine) -> None:
    good = [chat(p, temperature=0, max_tokens=30) for p in PROMPTS[:3]]
    expected = [(await engine.generate(r, soon())).choices[0].text for r in good]
    # overflows on the first token (prefill) and on the second token (a decoding step)
    at_prefill = chat(temperature=1e-45, max_tokens=30)
    at_step = chat(temperature=1.0, max_tokens=30, presence_penalty=-3e38, frequency_penalty=-3e38)
    results = await asyncio.gather(
        *(engine.generate(r, soon()) for r in [good[0], at_prefill, good[1], at_step, good[2]]),
        return_exceptions=True,
    )
    assert isinstance(results[1], InvalidRequestError) and results[1].param == "temperature"
    assert isinstance(results[3], InvalidRequestError)
    texts = [r.choices[0].text for r in (results[0], results[2], results[4])]  # type: ignore[union-attr]
    assert texts == expected
    assert engine.load().in_flight == 0


async def test_failed_forward_pass_fails_its_batch_and_the_loop_goes_on(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    exploded = threading.Event()

    def loader(config: LLMDeploymentConfig, cache_dir: Path) -> LoadedModel:
        loaded = load_causal_lm(config, cache_dir)

        def explode(_: Any, args: Any, kwargs: dict[str, Any]) -> None:
            # the first decoding step with both requests in the batch
            if kwargs["input_ids"].shape == (2, 1) and not exploded.is_set():
                exploded.set()
                raise RuntimeError("boom")

        loaded.model.register_forward_pre_hook(explode, with_kwargs=True)
        return loaded

    engine = await make_engine(tiny_llama_dir, tmp_path, loader=loader)
    try:
        first = await asyncio.gather(
            *(engine.generate(chat(temperature=0, max_tokens=50), soon()) for _ in range(2)),
            return_exceptions=True,
        )
        assert all(isinstance(r, EngineGenerationError) for r in first)
        after = await engine.generate(chat(temperature=0, max_tokens=5), soon())
        assert after.usage.completion_tokens == 5
    finally:
        await engine.stop()


async def test_seeded_sampling_does_not_depend_on_the_neighbours(
    engine: TransformersLLMEngine,
) -> None:
    seeded = chat(temperature=1.0, max_tokens=20, seed=7)
    alone = await engine.generate(seeded, soon())
    neighbours = [chat(p, temperature=1.0, max_tokens=25) for p in PROMPTS[:5]]
    results = await asyncio.gather(*(engine.generate(r, soon()) for r in [*neighbours, seeded]))
    assert results[-1] == alone


async def test_stop_fails_running_and_queued_requests_with_503(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine = await make_engine(tiny_llama_dir, tmp_path, max_batch_size=1)
    tasks = [
        asyncio.create_task(engine.generate(chat(temperature=0, max_tokens=200), soon()))
        for _ in range(3)
    ]
    await until(lambda: engine.load().in_flight == 3)
    await engine.stop()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, EngineUnavailableError) for r in results), results
    assert all(r.status_code == 503 for r in results)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "limits",
    [
        {"max_batch_size": 0},
        {"max_queue": -1},
        {"max_prefill_tokens": 0},  # chunks of no token: every prompt would fail
    ],
)
def test_the_scheduler_refuses_limits_it_cannot_work_with(limits: dict[str, int]) -> None:
    settings = {"max_batch_size": 4, "max_queue": 4, "max_prefill_tokens": 16, **limits}
    with pytest.raises(ValueError):
        BatchScheduler(cast(Any, None), name="tiny", **settings)
