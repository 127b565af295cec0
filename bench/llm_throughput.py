"""LLM throughput under concurrency: continuous batching over HTTP vs sequential ``generate``.

On the embedded model (``builtin:smollm2-135m-instruct``), greedy, ``--max-tokens`` (128) new
tokens per request, all in one run:

1. ``baseline``: the first ``--baseline-requests`` prompts run one after another with plain
   ``transformers`` ``model.generate`` (batch of one) in this process;
2. ``transformers-cb``: ``model.generate_batch`` (``transformers``' own continuous batching with
   paged attention) on 16 prompts in this process, and ``blaze-engine``: the Blaze engine on the
   same 16 prompts in this process (``--no-transformers-cb`` skips both);
3. ``http``: ``blaze serve`` as a subprocess (``max_batch_size`` 32, the response cache off for
   the model, so that the engine is measured) and, for each concurrency level (1, 4, 16, 32),
   that many streamed chat requests with different prompts sent at once with ``httpx`` (below
   4, several such waves one after another, each with new prompts): total completion tokens per
   second of wall time, and the time to first content (TTFT) p50;
   plus 16 requests arriving one every 250 ms (``staggered``: each joins a running batch);
4. the same over HTTP with ``dtype: bfloat16`` and with ``quantization: int8`` (levels 1, 16, 32);
5. llama.cpp on the same GGUF file, single stream, when ``llama_cpp`` is importable.

Each figure is printed with its ratio to the baseline's tokens/s. The greedy texts of the
baseline prompts are compared with the same prompts run batched over HTTP (16 concurrent,
float32): they must be identical. Acceptance lines: http at 16 >= 4x baseline, TTFT p50 at 16 <
3x the single-request TTFT. Exit status 0 when the texts agree (the targets are reported, not
enforced: the CPU is shared).

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python bench/llm_throughput.py

Options: ``--max-tokens 128 --concurrency 1,4,16,32 --variant-concurrency 1,16,32
--variants bfloat16,int8 (or compile) --baseline-requests 8 --threads 1 --no-transformers-cb``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse
import asyncio
import contextlib
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import torch
from llm_workload import (
    CACHE_DIR,
    MODEL,
    SERVED,
    WARMUP_PROMPT,
    StreamReader,
    chat_body,
    chat_request,
    generate_greedy,
    prompt,
    prompt_ids,
)

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.devtools.server import start_server
from blaze_ai.engines.builtin import resolve_builtin
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import LoadedModel, load_causal_lm
from blaze_ai.resilience.deadline import Deadline

TIMEOUT_S = 1800.0
STAGGER_GAP_S = 0.25
VARIANTS: dict[str, dict[str, Any]] = {
    "bfloat16": {"dtype": "bfloat16"},
    "int8": {"quantization": "int8"},
    "compile": {"compile": True},
}


@dataclass(frozen=True, slots=True)
class Run:
    """One measured row: requests, tokens, wall seconds, texts and times to first content."""

    name: str
    tokens: tuple[int, ...]
    seconds: float
    texts: tuple[str, ...] = ()
    ttft_s: tuple[float, ...] = ()

    @property
    def tokens_per_s(self) -> float:
        return sum(self.tokens) / self.seconds if self.seconds > 0 else 0.0

    @property
    def ttft_p50_s(self) -> float | None:
        return statistics.median(self.ttft_s) if self.ttft_s else None


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--variant-concurrency", default="1,16,32")
    parser.add_argument(
        "--variants", default="bfloat16,int8", help=f"of {','.join(VARIANTS)}; '' for none"
    )
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-transformers-cb", action="store_true")
    return parser.parse_args(argv)


def levels(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


# --- in-process rows ---------------------------------------------------------------------------


def bench_baseline(loaded: LoadedModel, count: int, max_tokens: int) -> Run:
    tokens, texts = [], []
    generate_greedy(loaded, WARMUP_PROMPT, 8)
    started = time.perf_counter()
    for i in range(count):
        generated, text = generate_greedy(loaded, prompt(i), max_tokens)
        tokens.append(len(generated))
        texts.append(text)
        log(f"baseline {i + 1}/{count}: {len(generated)} tokens")
    return Run(
        "baseline (sequential generate)", tuple(tokens), time.perf_counter() - started, tuple(texts)
    )


def bench_transformers_cb(loaded: LoadedModel, count: int, max_tokens: int) -> Run:
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_tokens,
        do_sample=False,
        eos_token_id=sorted(loaded.eos_token_ids),
        pad_token_id=loaded.pad_token_id,
    )
    inputs = [prompt_ids(loaded, prompt(i)) for i in range(count)]
    log(f"transformers-cb: generate_batch of {count} (warm-up included)")
    started = time.perf_counter()
    outputs = loaded.model.generate_batch(inputs=inputs, generation_config=config)
    seconds = time.perf_counter() - started
    tokens = tuple(len(o.generated_tokens) for o in outputs.values())
    return Run(f"transformers generate_batch x{count}", tokens, seconds)


def bench_engine(loaded: LoadedModel, count: int, max_tokens: int) -> Run:
    config = LLMDeploymentConfig(model=MODEL, max_batch_size=max(count, 1))
    engine = TransformersLLMEngine("bench", config, cache_dir=CACHE_DIR, loader=lambda *_: loaded)

    async def main() -> Run:
        await engine.start()
        try:
            await engine.generate(
                chat_request(WARMUP_PROMPT, max_tokens), Deadline.after(TIMEOUT_S)
            )
            log(f"blaze-engine: {count} concurrent, in process")
            started = time.perf_counter()
            results = await asyncio.gather(
                *(
                    engine.generate(chat_request(prompt(i), max_tokens), Deadline.after(TIMEOUT_S))
                    for i in range(count)
                )
            )
            seconds = time.perf_counter() - started
        finally:
            await engine.stop()
        tokens = tuple(r.usage.completion_tokens for r in results)
        return Run(f"blaze engine x{count} (in process)", tokens, seconds)

    return asyncio.run(main())


def bench_llama_cpp(max_tokens: int, threads: int) -> Run | None:
    if importlib.util.find_spec("llama_cpp") is None:
        log("llama.cpp: llama-cpp-python is not installed; skipped (pip install llama-cpp-python)")
        return None
    from llama_cpp import Llama

    gguf = resolve_builtin(MODEL.split(":", 1)[1]).path
    llm = Llama(model_path=str(gguf), n_threads=threads, n_ctx=2048, verbose=False)
    messages = [{"role": "user", "content": prompt(0)}]
    llm.create_chat_completion(messages=messages, max_tokens=8, temperature=0)  # warm-up
    started = time.perf_counter()
    out: Any = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0)
    seconds = time.perf_counter() - started
    # llama.cpp runs the file's own 4-bit weights (Q4_1); Blaze dequantizes them to float32
    name = f"llama.cpp x1 ({gguf.name.rsplit('.', 2)[-2]} as stored)"
    return Run(name, (out["usage"]["completion_tokens"],), seconds)


# --- HTTP --------------------------------------------------------------------------------------


@contextlib.contextmanager
def blaze_server(threads: int, **deployment: Any) -> Iterator[str]:
    """``blaze serve`` with one deployment of the embedded model; yields its base URL."""
    models = [
        {
            "name": SERVED,
            "cache": {"policy": "off"},  # the engine is measured, not the response cache
            "deployments": [{"model": MODEL, **deployment}],
        }
    ]
    env = {
        "BLAZE_RUNTIME__TORCH_THREADS": str(threads),
        "BLAZE_MODELS": json.dumps(models),
        "BLAZE_SERVER__REQUEST_TIMEOUT_S": str(TIMEOUT_S),
    }
    with start_server(env=env, args=("--log-level", "warning"), ready_timeout_s=300) as server:
        log(f"http: server ready ({deployment})")
        yield server.base_url


async def one_stream(
    client: httpx.AsyncClient, text: str, max_tokens: int
) -> tuple[int, str, float]:
    reader = StreamReader(time.perf_counter())
    body = chat_body(text, max_tokens, stream=True)
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            reader.feed(line)
    first = reader.first_content_s
    return reader.tokens, reader.text, first if first is not None else -1.0


def bench_http(
    base: str, label: str, concurrency: int, max_tokens: int, *, gap_s: float = 0.0
) -> Run:
    """``concurrency`` streamed requests at once; below 4, ``4 // concurrency`` such waves.

    With ``gap_s``, request ``i`` starts ``i * gap_s`` seconds after the first (staggered
    arrivals joining a running batch) and its TTFT counts from its own start.
    """
    waves = max(1, 4 // concurrency)

    async def delayed(client: httpx.AsyncClient, i: int, wave: int) -> tuple[int, str, float]:
        await asyncio.sleep(i * gap_s)
        return await one_stream(client, prompt(wave * concurrency + i), max_tokens)

    async def main() -> Run:
        limits = httpx.Limits(max_connections=concurrency + 4)
        async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S, limits=limits) as client:
            await one_stream(client, WARMUP_PROMPT, 8)  # warm-up
            results: list[tuple[int, str, float]] = []
            started = time.perf_counter()
            for wave in range(waves):
                results += await asyncio.gather(
                    *(delayed(client, i, wave) for i in range(concurrency))
                )
            seconds = time.perf_counter() - started
        tokens, texts, ttft = zip(*results, strict=True)
        return Run(f"{label} x{concurrency}", tokens, seconds, texts, ttft)

    run = asyncio.run(main())
    log(
        f"{run.name}: {sum(run.tokens)} tokens in {run.seconds:.1f} s "
        f"= {run.tokens_per_s:.1f} tok/s"
    )
    return run


# --- report ------------------------------------------------------------------------------------


def report(rows: list[Run], baseline: Run) -> None:
    log("")
    header = (
        f"{'mode':<40} {'req':>4} {'tokens':>7} {'s':>7} {'tok/s':>7} {'vs base':>8} "
        f"{'TTFT p50':>9}"
    )
    log(header)
    log("-" * len(header))
    for r in rows:
        p50 = f"{r.ttft_p50_s * 1000:.0f} ms" if r.ttft_p50_s is not None else "-"
        ratio = r.tokens_per_s / baseline.tokens_per_s
        log(
            f"{r.name:<40} {len(r.tokens):>4} {sum(r.tokens):>7} {r.seconds:>7.1f} "
            f"{r.tokens_per_s:>7.1f} {ratio:>7.2f}x {p50:>9}"
        )


def check_targets(http: dict[int, Run], baseline: Run) -> None:
    if 16 in http:
        ratio = http[16].tokens_per_s / baseline.tokens_per_s
        log(f"{'PASS' if ratio >= 4 else 'MISS'}: http x16 = {ratio:.2f}x baseline (target >= 4x)")
    if 1 in http and 16 in http:
        single, many = http[1].ttft_p50_s or 0.0, http[16].ttft_p50_s or 0.0
        ratio = many / single if single else float("inf")
        log(
            f"{'PASS' if ratio < 3 else 'MISS'}: TTFT p50 x16 {many * 1000:.0f} ms = {ratio:.1f}x "
            f"single {single * 1000:.0f} ms (target < 3x)"
        )


def check_identical(baseline: Run, batched: Run) -> bool:
    pairs = list(zip(baseline.texts, batched.texts, strict=False))
    same = [i for i, (a, b) in enumerate(pairs) if a == b]
    log(
        f"greedy float32: {len(same)}/{len(pairs)} texts identical, "
        f"sequential generate vs {batched.name}"
    )
    for i, (a, b) in enumerate(pairs):
        if a != b:
            cut = next(
                (k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                min(len(a), len(b)),
            )
            log(
                f"  request {i} differs at character {cut}: "
                f"{a[cut : cut + 40]!r} vs {b[cut : cut + 40]!r}"
            )
    return len(same) == len(pairs)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    log(f"{MODEL}, greedy, max_tokens={args.max_tokens}, torch threads={args.threads}")
    loaded = load_causal_lm(LLMDeploymentConfig(model=MODEL), CACHE_DIR)
    baseline = bench_baseline(loaded, args.baseline_requests, args.max_tokens)
    rows = [baseline]
    if not args.no_transformers_cb:
        rows.append(bench_engine(loaded, 16, args.max_tokens))
        rows.append(
            bench_transformers_cb(
                load_causal_lm(LLMDeploymentConfig(model=MODEL), CACHE_DIR), 16, args.max_tokens
            )
        )
    del loaded
    http: dict[int, Run] = {}
    with blaze_server(args.threads, max_batch_size=32, max_queue=64) as base:
        for c in levels(args.concurrency):
            http[c] = bench_http(base, "http float32", c, args.max_tokens)
        gap = f"http float32 staggered {STAGGER_GAP_S * 1000:.0f} ms"
        staggered = bench_http(base, gap, 16, args.max_tokens, gap_s=STAGGER_GAP_S)
    rows += [*http.values(), staggered]
    for variant in [v for v in args.variants.split(",") if v]:
        option = VARIANTS[variant]
        with blaze_server(args.threads, max_batch_size=32, max_queue=64, **option) as base:
            rows += [
                bench_http(base, f"http {variant}", c, args.max_tokens)
                for c in levels(args.variant_concurrency)
            ]
    llama = bench_llama_cpp(args.max_tokens, args.threads)
    rows += [llama] if llama else []
    report(rows, baseline)
    check_targets(http, baseline)
    batched = http.get(16) or http[max(http)]
    return 0 if check_identical(baseline, batched) else 1


if __name__ == "__main__":
    sys.exit(main())
