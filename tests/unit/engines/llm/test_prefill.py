"""Prefill on a tiny random Llama in float32: prompts packed into one forward pass, run after a
cached prefix, or run in chunks give the same tokens as each prompt run alone, whole."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import torch

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import LoadedModel, load_causal_lm
from blaze_ai.engines.llm.prefill import PromptRunner
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ChatRequest, Message, SamplingParams, TextResult

from .gates import StepGate

SYSTEM = "You are a terse assistant that answers in one short sentence about geography."
QUESTIONS = [
    "Where is Paris?",
    "Name a river.",
    "What is the tallest mountain on Earth, and where is it?",
    "Rome?",
    "Tell me about the Sahara desert and the countries around it.",
    "Is Tokyo a big city?",
]


def chat(question: str, **params: Any) -> ChatRequest:
    messages = (Message("system", SYSTEM), Message("user", question))
    return ChatRequest(model="tiny", messages=messages, params=SamplingParams(**params))


class Prefills:
    """Counts prefill forward passes (more than one new token) and holds the batching thread
    at its next forward pass until :meth:`release` (so a test can queue requests first)."""

    def __init__(self, model: Any) -> None:
        self.calls: list[tuple[int, ...]] = []
        self.shapes: list[tuple[int, ...]] = []  # every forward pass, decoding steps included
        self._go = threading.Event()
        self.waiting = threading.Event()
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"]
        self.shapes.append(tuple(ids.shape))
        if ids.shape[1] > 1:
            self.calls.append(tuple(ids.shape))
        self.waiting.set()
        self._go.wait(30)

    def release(self) -> None:
        self._go.set()


async def engine_with(
    folder: Path, cache: Path, *, hook: Any = None, **config: Any
) -> tuple[TransformersLLMEngine, list[Any]]:
    """A started engine on the tiny model and the ``hook`` (default :class:`Prefills`) put on
    its model."""
    counters: list[Any] = []

    def loader(cfg: LLMDeploymentConfig, cache_dir: Path) -> LoadedModel:
        loaded = load_causal_lm(cfg, cache_dir)
        counters.append((hook or Prefills)(loaded.model))
        return loaded

    engine = TransformersLLMEngine(
        "tiny/0", LLMDeploymentConfig(model=str(folder), **config), cache_dir=cache, loader=loader
    )
    await engine.start()
    return engine, counters


async def run_together(engine: TransformersLLMEngine, prefills: Prefills, reqs: list[ChatRequest]):
    """Hold the batching thread on a first request, queue ``reqs``, then let everything run."""
    first = asyncio.create_task(engine.generate(chat("Hello"), Deadline.after(60)))
    await asyncio.to_thread(prefills.waiting.wait, 10)
    tasks = [asyncio.create_task(engine.generate(r, Deadline.after(60))) for r in reqs]
    async with asyncio.timeout(10):
        while engine.load().queue_depth < len(reqs):
            await asyncio.sleep(0.005)
    prefills.release()
    await first
    return await asyncio.gather(*tasks)


async def each_alone(folder: Path, cache: Path, reqs: list[ChatRequest]) -> list[TextResult]:
    """Each request run alone, one after another, whole, with the prefix cache off."""
    engine, counters = await engine_with(folder, cache, prefix_cache_max_bytes=0)
    counters[0].release()
    try:
        return [await engine.generate(r, Deadline.after(60)) for r in reqs]
    finally:
        await engine.stop()


async def test_packed_prompts_after_a_cached_prefix_match_each_prompt_alone(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    reqs = [chat(q, temperature=0, max_tokens=24) for q in QUESTIONS]
    reqs.append(chat(QUESTIONS[0], temperature=0, max_tokens=10, n=2))
    alone = await each_alone(tiny_llama_dir, tmp_path, reqs)
    assert all(r.usage.cached_tokens == 0 for r in alone)

    engine, counters = await engine_with(tiny_llama_dir, tmp_path, max_prefill_tokens=4096)
    try:
        together = await run_together(engine, counters[0], reqs)
        cached_total = engine.batch_stats().cached_prompt_tokens_total
    finally:
        await engine.stop()
    assert [[c.text for c in r.choices] for r in together] == [
        [c.text for c in r.choices] for r in alone
    ]
    assert [r.usage.completion_tokens for r in together] == [24] * 6 + [20]
    # one forward pass for the first request, one for the seven queued behind it
    assert len(counters[0].calls) == 2
    assert counters[0].calls[1][0] == 1  # packed into one row
    # every queued prompt reused the system prompt computed for the first one
    assert all(r.usage.cached_tokens >= 8 for r in together)
    assert cached_total == sum(r.usage.cached_tokens for r in together)


async def test_the_prefill_budget_splits_a_burst_into_several_forward_passes(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    # no prefix cache: each prompt costs its 83-100 tokens; two do not fit in 100
    engine, counters = await engine_with(
        tiny_llama_dir, tmp_path, prefix_cache_max_bytes=0, max_prefill_tokens=100
    )
    try:
        results = await run_together(
            engine,
            counters[0],
            [chat(q, temperature=0, max_tokens=4) for q in (*QUESTIONS[:2], QUESTIONS[5])],
        )
    finally:
        await engine.stop()
    assert [r.usage.completion_tokens for r in results] == [4, 4, 4]
    assert all(80 < r.usage.prompt_tokens <= 100 for r in results)
    assert len(counters[0].calls) == 4  # the first request, then one prompt per iteration


async def test_a_request_that_fails_sampling_in_a_packed_group_fails_alone(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine, counters = await engine_with(tiny_llama_dir, tmp_path)
    reqs = [chat(q, temperature=0, max_tokens=6) for q in QUESTIONS[:3]]
    bad = chat(QUESTIONS[3], temperature=1e-45, max_tokens=6)  # overflows at the first token
    first = asyncio.create_task(engine.generate(chat("Hello"), Deadline.after(60)))
    await asyncio.to_thread(counters[0].waiting.wait, 10)
    tasks = [
        asyncio.create_task(engine.generate(r, Deadline.after(60)))
        for r in [reqs[0], bad, *reqs[1:]]
    ]
    async with asyncio.timeout(10):
        while engine.load().queue_depth < 4:
            await asyncio.sleep(0.005)
    counters[0].release()
    try:
        await first
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await engine.stop()
    assert isinstance(results[1], Exception) and getattr(results[1], "param", None) == "temperature"
    assert [r.usage.completion_tokens for r in (results[0], *results[2:])] == [6, 6, 6]  # type: ignore[union-attr]
    assert len(counters[0].calls) == 2


def test_sliding_window_models_prefill_one_prompt_at_a_time(tiny_llama_dir: Path) -> None:
    loaded = load_causal_lm(LLMDeploymentConfig(model=str(tiny_llama_dir)), tiny_llama_dir.parent)
    assert PromptRunner(loaded.model, device=torch.device("cpu")).packing
    loaded.model.config.sliding_window = 16
    assert not PromptRunner(loaded.model, device=torch.device("cpu")).packing


def test_packed_forward_keeps_each_prompts_keys_and_values(tiny_llama_dir: Path) -> None:
    """The states a packed prefill returns for each prompt equal those of the prompt alone."""
    loaded = load_causal_lm(LLMDeploymentConfig(model=str(tiny_llama_dir)), tiny_llama_dir.parent)
    model = loaded.model
    prompts = [[1, 5, 9, 13, 17, 2, 3], [1, 5, 9, 13, 4], [7, 8, 9, 10, 11, 12, 13, 14, 15]]
    runner = PromptRunner(model, device=torch.device("cpu"))
    with torch.inference_mode():
        alone = [model(input_ids=torch.tensor([p]), use_cache=True) for p in prompts]
        logits, states = runner.run_packed(prompts, [None, None, None])
    for index, single in enumerate(alone):
        torch.testing.assert_close(
            logits[index], single.logits[0, -1].float(), atol=1e-4, rtol=1e-4
        )
        keys = single.past_key_values.layers[0].keys
        torch.testing.assert_close(states[index][0][0], keys, atol=1e-5, rtol=1e-5)


LONG = f"{QUESTIONS[2]} {QUESTIONS[4]} {QUESTIONS[0]}"


async def test_a_prompt_over_the_budget_runs_in_chunks_between_decoding_steps(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    long = chat(LONG, temperature=0, max_tokens=12)
    (whole,) = await each_alone(tiny_llama_dir, tmp_path, [long])
    prompt_tokens = whole.usage.prompt_tokens
    assert prompt_tokens > 2 * 32

    engine, counters = await engine_with(
        tiny_llama_dir, tmp_path, prefix_cache_max_bytes=0, max_prefill_tokens=32
    )
    counters[0].release()
    try:
        streaming = engine.stream(chat("Rome?", temperature=0, max_tokens=100), Deadline.after(60))
        await anext(streaming)  # decoding now
        chunked = await engine.generate(long, Deadline.after(60))
        await streaming.aclose()
    finally:
        await engine.stop()
    assert chunked.choices[0].text == whole.choices[0].text
    assert chunked.usage == whole.usage
    sizes = [32] * (prompt_tokens // 32) + ([prompt_tokens % 32] if prompt_tokens % 32 else [])
    shapes = counters[0].shapes
    decoding = shapes.index((1, 1))  # the stream's first step: its own prompt ran before
    chunks = [i for i, shape in enumerate(shapes) if shape[1] > 1 and i > decoding]
    assert [shapes[i][1] for i in chunks] == sizes
    # the running stream decoded a step after every chunk; after the last, both decode
    assert [shapes[i + 1] for i in chunks] == [(1, 1)] * (len(chunks) - 1) + [(2, 1)]


async def test_a_request_cancelled_between_chunks_runs_no_further_chunk(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine, gates = await engine_with(
        tiny_llama_dir, tmp_path, hook=StepGate, max_prefill_tokens=16
    )
    gate = gates[0]
    try:
        stream = engine.stream(chat(LONG, temperature=0, max_tokens=12), Deadline.after(60))
        first = asyncio.create_task(anext(stream))
        await gate.step()  # chunk 1 ran; chunk 2 waits at the gate
        first.cancel()  # the client goes away
        await asyncio.gather(first, return_exceptions=True)
        after = asyncio.create_task(
            engine.generate(chat("Rome?", temperature=0, max_tokens=3), Deadline.after(60))
        )
        await gate.step()  # chunk 2 runs; the next forward pass is the next request's
        gate.release()
        assert (await after).usage.completion_tokens == 3
        stats = engine.batch_stats()
    finally:
        gate.release()
        await engine.stop()
    assert stats.cancelled_total == 1
    assert engine.load().in_flight == 0


async def test_without_packing_a_group_runs_prompt_by_prompt_in_one_iteration(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    class UnpackedPrefills(Prefills):
        def __init__(self, model: Any) -> None:
            model.config.sliding_window = 4096  # as a sliding-window model would say
            super().__init__(model)

    reqs = [chat(q, temperature=0, max_tokens=6) for q in QUESTIONS[:3]]
    engine, counters = await engine_with(tiny_llama_dir, tmp_path, hook=UnpackedPrefills)
    try:
        together = await run_together(engine, counters[0], reqs)
    finally:
        await engine.stop()
    alone = await each_alone(tiny_llama_dir, tmp_path, reqs)
    assert [r.choices[0].text for r in together] == [r.choices[0].text for r in alone]
    # the first request's prefill and first step, then the three prompts one by one, then one
    # decoding step for all four requests
    shapes = counters[0].shapes
    assert shapes[1] == (1, 1)
    assert [s[0] for s in shapes[2:5]] == [1, 1, 1] and all(s[1] > 1 for s in shapes[2:5])
    assert shapes[5] == (4, 1)
