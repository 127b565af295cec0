"""Fair, bounded batching (issue 11): a request's ``n`` sequences take turns with other requests
instead of holding the batch, and per-request caps bound ``n × max_tokens`` and the prompt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import LoadedModel, load_causal_lm
from blaze_ai.errors import (
    EngineGenerationError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
)
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import FinishReason

from .gates import StepGate
from .test_scheduler import chat, make_engine, make_gated_engine, soon, until


@pytest.fixture(scope="module")
async def engine(
    tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TransformersLLMEngine]:
    engine = await make_engine(
        tiny_llama_dir,
        tmp_path_factory.mktemp("cache"),
        max_batch_size=4,  # two sequences of one request at once
        max_completion_tokens_per_request=200,
        max_prompt_tokens=40,
    )
    yield engine
    await engine.stop()


async def test_a_large_n_never_holds_more_than_its_share_and_answers_every_choice(
    engine: TransformersLLMEngine,
) -> None:
    big = chat(temperature=1.0, seed=11, n=7, max_tokens=12)
    small = [chat(f"short {i}", temperature=0, max_tokens=3) for i in range(3)]
    results = await asyncio.gather(*(engine.generate(r, soon()) for r in [big, *small]))
    assert engine.batch_stats().peak_batch_size <= 4
    choices = results[0].choices
    assert [c.index for c in choices] == list(range(7))
    assert all(c.finish_reason is not None for c in choices)
    assert results[0].usage.prompt_tokens > 0
    assert len({c.text for c in choices}) > 2, "groups seeded alike repeat each other"
    again = await engine.generate(big, soon())
    assert [c.text for c in again.choices] == [c.text for c in choices]  # seeded: reproducible


async def test_a_short_request_answers_while_a_large_n_takes_turns(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    """The short request joins while the big one is surely running: the big one's first
    forward pass is held at a gate until the short one is queued (a plain sleep let the big
    one finish first on a loaded machine)."""
    engine, gates = await make_gated_engine(
        tiny_llama_dir, tmp_path, max_batch_size=4, max_completion_tokens_per_request=200
    )
    finished: list[str] = []

    async def run(name: str, **params: Any) -> None:
        await engine.generate(chat(name, temperature=0, **params), soon())
        finished.append(name)

    try:
        big = asyncio.create_task(run("big", n=8, max_tokens=20))
        await gates[0].wait_arrival()  # the big request's prefill waits at the gate
        short = asyncio.create_task(run("short", max_tokens=2))
        await until(lambda: engine.load().in_flight >= 2)  # the short one is queued
        gates[0].release()
        await asyncio.gather(big, short)
        assert finished == ["short", "big"]
        assert engine.batch_stats().peak_batch_size <= 4
    finally:
        gates[0].release()
        await engine.stop()


async def test_streamed_choices_of_later_groups_carry_their_index(
    engine: TransformersLLMEngine,
) -> None:
    seen: dict[int, str] = {}
    async for item in engine.stream(chat(temperature=0, n=5, max_tokens=4), soon()):
        if hasattr(item, "index"):
            seen[item.index] = seen.get(item.index, "") + item.text
    assert sorted(seen) == [0, 1, 2, 3, 4]
    assert len(set(seen.values())) == 1  # greedy: every choice alike, wherever it ran


async def test_n_times_max_tokens_over_the_cap_is_refused_naming_max_tokens(
    engine: TransformersLLMEngine,
) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        await engine.generate(chat(n=128, max_tokens=100), soon())
    assert raised.value.param == "max_tokens" and "128 × 100" in str(raised.value)
    assert raised.value.status_code == 400


async def test_without_max_tokens_each_choice_gets_its_share_of_the_cap(
    engine: TransformersLLMEngine,
) -> None:
    # seeded: unseeded, 2% of runs had 3 or more choices end on EOS before their 25 tokens
    result = await engine.generate(chat(temperature=1.0, seed=1, n=8), soon())
    assert 0 < result.usage.completion_tokens <= 200  # 25 per choice: the window has more room
    assert sum(c.finish_reason == FinishReason.LENGTH for c in result.choices) >= 6


async def test_a_prompt_over_max_prompt_tokens_is_refused_naming_messages(
    engine: TransformersLLMEngine,
) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        await engine.generate(chat("word " * 60, max_tokens=2), soon())
    assert raised.value.param == "messages"


async def test_later_groups_run_without_a_prefix_cache_too(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine = await make_engine(
        tiny_llama_dir, tmp_path, max_batch_size=2, prefix_cache_max_bytes=0, max_prefill_tokens=8
    )
    try:
        result = await engine.generate(chat("a longer prompt " * 4, n=3, max_tokens=3), soon())
        assert len(result.choices) == 3 and engine.batch_stats().peak_batch_size <= 2
    finally:
        await engine.stop()


def test_max_sequences_per_request_cannot_exceed_the_batch() -> None:
    with pytest.raises(ValidationError, match="max_sequences_per_request"):
        LLMDeploymentConfig(model="/m", max_batch_size=4, max_sequences_per_request=5)


# --- review (issue 11): parked requests, later groups, accounting ----------------------------


@pytest.fixture
async def two_rows(
    tiny_llama_dir: Path, tmp_path: Path
) -> AsyncIterator[tuple[TransformersLLMEngine, StepGate]]:
    """Two rows, one per request: a request with ``n`` > 1 parks between its choices."""
    engine, gates = await make_gated_engine(
        tiny_llama_dir, tmp_path, max_batch_size=2, max_sequences_per_request=1
    )
    yield engine, gates[0]
    gates[0].release()
    await engine.stop()


async def _park(
    engine: TransformersLLMEngine, gate: StepGate, deadline: Deadline | None = None
) -> tuple[asyncio.Task[list[Any]], list[asyncio.Task[Any]], list[Any]]:
    """Start ``A`` (n=3, 3 tokens each), then two long requests; step the gate until ``A``'s
    first choice has finished and ``A`` waits in the queue behind them (the gate holds the
    step of the long ones)."""
    seen: list[Any] = []

    async def consume() -> list[Any]:
        async for item in engine.stream(
            chat("parked", temperature=0, n=3, max_tokens=3), deadline or soon()
        ):
            seen.append(item)
        return seen

    parked = asyncio.create_task(consume())
    await gate.wait_arrival()  # A's first prefill
    long = [
        asyncio.create_task(
            engine.generate(chat(f"long {i}", temperature=0, max_tokens=60), soon())
        )
        for i in range(2)
    ]
    await until(lambda: engine.batch_stats().queue_depth == 2)
    for _ in range(20):
        stats = engine.batch_stats()
        first_done = any(getattr(i, "index", None) == 0 and i.finish_reason for i in seen)
        if first_done and stats.queue_depth == 1 and stats.batch_size == 2:
            break
        await gate.step()
    else:
        raise AssertionError(f"A never parked: {engine.batch_stats()}")
    return parked, long, seen


async def test_review_a_stream_closed_while_parked_is_dropped_and_counted(two_rows: Any) -> None:
    engine, gate = two_rows
    parked, long, _ = await _park(engine, gate)
    assert engine.load().in_flight == 3  # the parked request counts as queued
    assert engine.batch_stats().running == 2
    parked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await parked
    before = engine.batch_stats().cancelled_total
    await gate.step()
    await until(lambda: engine.batch_stats().queue_depth == 0)
    assert engine.batch_stats().cancelled_total == before + 1
    gate.release()
    await asyncio.gather(*long)
    await until(lambda: engine.load().in_flight == 0)


async def test_review_a_deadline_passing_while_parked_times_out_and_frees_the_queue(
    two_rows: Any,
) -> None:
    engine, gate = two_rows
    parked, long, _ = await _park(engine, gate, Deadline.after(3.0))
    with pytest.raises(EngineTimeoutError):
        await parked
    await gate.step()
    await until(lambda: engine.batch_stats().queue_depth == 0)
    gate.release()
    await asyncio.gather(*long)
    await until(lambda: engine.load().in_flight == 0)


async def test_review_stop_while_parked_fails_it_with_503_and_nothing_hangs(
    two_rows: Any,
) -> None:
    engine, gate = two_rows
    parked, long, _ = await _park(engine, gate)
    stopping = asyncio.create_task(engine.stop())
    await asyncio.sleep(0.05)
    gate.release()
    async with asyncio.timeout(10):
        await stopping
        with pytest.raises(EngineUnavailableError) as raised:
            await parked
        assert raised.value.status_code == 503
        outcomes = await asyncio.gather(*long, return_exceptions=True)
    assert all(isinstance(o, EngineUnavailableError) for o in outcomes)


async def test_review_a_failure_in_a_later_group_fails_the_request_and_the_loop_goes_on(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    prefills: list[int] = []

    def loader(config: LLMDeploymentConfig, cache_dir: Path) -> LoadedModel:
        loaded = load_causal_lm(config, cache_dir)

        def explode(_: Any, args: Any, kwargs: dict[str, Any]) -> None:
            if kwargs["input_ids"].shape[1] > 1:  # a prefill
                prefills.append(1)
                if len(prefills) == 2:  # the request's second group
                    raise RuntimeError("boom")

        loaded.model.register_forward_pre_hook(explode, with_kwargs=True)
        return loaded

    engine = await make_engine(
        tiny_llama_dir, tmp_path, loader=loader, max_batch_size=2, prefix_cache_max_bytes=0
    )
    try:
        with pytest.raises(EngineGenerationError):
            await engine.generate(chat(temperature=0, n=3, max_tokens=3), soon())
        after = await engine.generate(chat(temperature=0, n=3, max_tokens=3), soon())
        assert len(after.choices) == 3
        assert engine.load().in_flight == 0
    finally:
        await engine.stop()


async def test_review_usage_counts_the_prompt_once_and_every_group_s_tokens(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine = await make_engine(tiny_llama_dir, tmp_path, max_batch_size=4)
    try:
        grouped = chat("usage across groups", temperature=0, n=5, max_tokens=5)
        first = await engine.generate(grouped, soon())  # its later groups reuse its prompt...
        assert first.usage.cached_tokens == 0  # ...which is not the client's cached prompt
        alone = await engine.generate(
            chat("usage across groups", temperature=0, max_tokens=5), soon()
        )
        again = await engine.generate(grouped, soon())
        assert alone.usage.cached_tokens > 0
        for result in (first, again):
            assert result.usage.prompt_tokens == alone.usage.prompt_tokens  # counted once
            assert result.usage.completion_tokens == 5 * alone.usage.completion_tokens
            assert [c.text for c in result.choices] == [alone.choices[0].text] * 5
        assert again.usage.cached_tokens == alone.usage.cached_tokens
    finally:
        await engine.stop()


@pytest.mark.parametrize("prefix_cache_max_bytes", [0, 2**24])
async def test_review_chunked_prefill_of_every_group_gives_the_same_greedy_text(
    tiny_llama_dir: Path, tmp_path: Path, prefix_cache_max_bytes: int
) -> None:
    engine = await make_engine(
        tiny_llama_dir,
        tmp_path,
        max_batch_size=2,
        max_prefill_tokens=8,
        prefix_cache_max_bytes=prefix_cache_max_bytes,
    )
    try:
        prompt = "a longer prompt for chunks " * 4
        alone = await engine.generate(chat(prompt, temperature=0, max_tokens=6), soon())
        grouped = await engine.generate(chat(prompt, temperature=0, n=3, max_tokens=6), soon())
        assert [c.text for c in grouped.choices] == [alone.choices[0].text] * 3
        assert grouped.usage.completion_tokens == 3 * alone.usage.completion_tokens
        assert grouped.usage.prompt_tokens == alone.usage.prompt_tokens
        assert engine.batch_stats().peak_batch_size <= 2
    finally:
        await engine.stop()


async def test_review_seeded_groups_differ_and_the_first_group_matches_a_smaller_n(
    engine: TransformersLLMEngine,
) -> None:
    four = await engine.generate(chat(temperature=1.0, seed=5, n=4, max_tokens=8), soon())
    two = await engine.generate(chat(temperature=1.0, seed=5, n=2, max_tokens=8), soon())
    texts = [c.text for c in four.choices]
    assert texts[:2] == [c.text for c in two.choices]
    assert texts[2:] != texts[:2], "the second group repeats the first"


async def test_review_stop_sequences_end_every_group_s_choices(
    engine: TransformersLLMEngine,
) -> None:
    reference = (await engine.generate(chat(temperature=0, max_tokens=30), soon())).choices[0].text
    stop = reference[10:13]
    assert stop.strip()
    result = await engine.generate(chat(temperature=0, n=5, max_tokens=30, stop=(stop,)), soon())
    assert {c.finish_reason for c in result.choices} == {FinishReason.STOP}
    assert {c.text for c in result.choices} == {reference[: reference.index(stop)]}


async def test_review_seeded_choices_do_not_depend_on_the_deployment_s_batching(
    tiny_llama_dir: Path, tmp_path: Path, engine: TransformersLLMEngine
) -> None:
    """A seeded answer depends on the request, not on how the deployment groups its choices:
    two replicas of one model with other batch sizes (so other shares of ``n``) give the same
    choices, and the response cache (not keyed by deployment) stays right."""
    req = chat(temperature=1.0, seed=9, n=4, max_tokens=8)
    wide = await make_engine(tiny_llama_dir, tmp_path, max_batch_size=8)  # all 4 at once
    try:
        at_once = await wide.generate(req, soon())
    finally:
        await wide.stop()
    in_groups = await engine.generate(req, soon())  # max_batch_size=4: two groups of 2
    assert [c.text for c in in_groups.choices] == [c.text for c in at_once.choices]
