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
from blaze_ai.errors import InvalidRequestError
from blaze_ai.types import FinishReason

from .test_scheduler import chat, make_engine, soon


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
    engine: TransformersLLMEngine,
) -> None:
    finished: list[str] = []

    async def run(name: str, **params: Any) -> None:
        await engine.generate(chat(name, temperature=0, **params), soon())
        finished.append(name)

    big = asyncio.create_task(run("big", n=8, max_tokens=20))
    await asyncio.sleep(0.05)
    await asyncio.gather(big, run("short", max_tokens=2))
    assert finished == ["short", "big"]
    assert engine.batch_stats().peak_batch_size <= 4


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
    result = await engine.generate(chat(temperature=1.0, n=8), soon())
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
