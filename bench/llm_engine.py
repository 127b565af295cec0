"""LLM engine overhead: raw ``transformers`` vs the Blaze engine vs the Blaze HTTP server.

Measures decode throughput (completion tokens per second of wall time) of the embedded model
(``builtin:smollm2-135m-instruct``, converted once into ``~/.cache/blaze/models/``) for the same
chat prompts and greedy settings (temperature 0, ``--max-tokens``), one request at a time:

1. ``raw``: ``model.generate`` on the model and tokenizer from ``load_causal_lm`` (chat template,
   the engine's eos/pad ids, ``max_new_tokens``; templating and decoding are timed too);
2. ``engine``: ``TransformersLLMEngine.generate()`` in this process, on the same model object;
3. ``http``: ``blaze serve`` as a subprocess, ``POST /v1/chat/completions`` with ``httpx``,
   tokens from ``usage.completion_tokens``;
4. ``http-stream``: the same, streamed (SSE, ``stream_options.include_usage``).

Each mode runs one warm-up request first, then ``--rounds`` passes over the prompts. The table
gives each mode's tokens/s and its ratio to ``raw``; the three paths must produce the same
completion token counts (greedy decoding), and the acceptance line is engine >= 0.9x raw.
Exit status: 0 when that line passes and the counts agree, else 1.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python bench/llm_engine.py

Options: ``--max-tokens 64 --rounds 2 --port 0 (a free one) --threads 1 --no-http --no-stream``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import torch
from llm_workload import (
    CACHE_DIR,
    MODEL,
    WARMUP_PROMPT,
    StreamReader,
    chat_body,
    chat_request,
    generate_greedy,
)
from llm_workload import PROMPTS as ALL_PROMPTS

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import serve_command, start_server
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import LoadedModel, load_causal_lm
from blaze_ai.resilience.deadline import Deadline

TARGET_RATIO = 0.9
READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 600.0

PROMPTS = ALL_PROMPTS[:5]


@dataclass
class ModeResult:
    """Measured requests of one mode (the warm-up excluded)."""

    name: str
    tokens: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    seconds: float = 0.0
    first_token_s: list[float] = field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)

    @property
    def tokens_per_s(self) -> float:
        return self.total_tokens / self.seconds if self.seconds > 0 else 0.0


def log(message: str) -> None:
    print(message, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens per request")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the prompts per mode")
    parser.add_argument("--port", type=int, default=0, help="server port (0: a free one)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (all modes)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP modes")
    parser.add_argument("--no-stream", action="store_true", help="skip the streamed HTTP mode")
    args = parser.parse_args(argv)
    if args.max_tokens < 1 or args.rounds < 1 or args.threads < 1:
        parser.error("--max-tokens, --rounds and --threads must be >= 1")
    return args


def workload(rounds: int) -> list[str]:
    return [prompt for _ in range(rounds) for prompt in PROMPTS]


def run_timed(
    name: str, prompts: list[str], one: Callable[[str], tuple[int, str, float | None]]
) -> ModeResult:
    """Warm up with one request, then run ``prompts`` one at a time through ``one``."""
    log(f"{name}: warm-up")
    one(WARMUP_PROMPT)
    result = ModeResult(name)
    for i, prompt in enumerate(prompts, 1):
        started = time.perf_counter()
        tokens, text, first_token_s = one(prompt)
        result.seconds += time.perf_counter() - started
        result.tokens.append(tokens)
        result.texts.append(text)
        if first_token_s is not None:
            result.first_token_s.append(first_token_s)
        log(f"{name} {i}/{len(prompts)}: {tokens} tokens")
    return result


# --- 1. raw transformers ----------------------------------------------------------------------


def bench_raw(loaded: LoadedModel, prompts: list[str], max_tokens: int) -> ModeResult:
    def one(prompt: str) -> tuple[int, str, float | None]:
        generated, text = generate_greedy(loaded, prompt, max_tokens)
        return len(generated), text, None

    return run_timed("raw", prompts, one)


# --- 2. the engine, in process -----------------------------------------------------------------


def bench_engine(
    loaded: LoadedModel, prompts: list[str], max_tokens: int, threads: int
) -> ModeResult:
    config = LLMDeploymentConfig(model=MODEL)
    engine = TransformersLLMEngine(
        "bench",
        config,
        cache_dir=CACHE_DIR,
        torch_threads=threads,
        loader=lambda _config, _cache: loaded,  # the very model object the raw mode used
    )

    async def main() -> ModeResult:
        await engine.start()
        loop = asyncio.get_running_loop()
        try:  # the same steps as run_timed, awaited on this loop
            log("engine: warm-up")
            await engine.generate(chat_request(WARMUP_PROMPT, max_tokens), Deadline.after(600))
            result = ModeResult("engine")
            for i, prompt in enumerate(prompts, 1):
                started = loop.time()
                answer = await engine.generate(
                    chat_request(prompt, max_tokens), Deadline.after(REQUEST_TIMEOUT_S)
                )
                result.seconds += loop.time() - started
                result.tokens.append(answer.usage.completion_tokens)
                result.texts.append(answer.choices[0].text)
                log(f"engine {i}/{len(prompts)}: {answer.usage.completion_tokens} tokens")
            return result
        finally:
            await engine.stop()

    return asyncio.run(main())


# --- 3. HTTP -----------------------------------------------------------------------------------


SERVER_ARGS = ("--log-level", "warning")


@contextlib.contextmanager
def blaze_server(port: int, threads: int) -> Iterator[str]:
    """Start ``blaze serve`` on ``port``, wait until /ready is 200, yield its base URL; stop it."""
    log(f"http: starting {' '.join(serve_command(port, args=SERVER_ARGS))}")
    with start_server(
        env={"BLAZE_RUNTIME__TORCH_THREADS": str(threads)},
        args=SERVER_ARGS,
        port=port,
        ready_timeout_s=READY_TIMEOUT_S,
        start_new_session=True,
    ) as server:
        log(f"http: server ready after {server.ready_after_s:.1f} s")
        yield server.base_url
    log(f"http: server stopped (exit status {server.process.returncode})")


NO_CACHE = {"Cache-Control": "no-cache, no-store"}
"""Every HTTP request is answered by the model, never by the response cache."""


def bench_http(base: str, prompts: list[str], max_tokens: int) -> ModeResult:
    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S, headers=NO_CACHE) as client:

        def one(prompt: str) -> tuple[int, str, float | None]:
            response = client.post(
                "/v1/chat/completions", json=chat_body(prompt, max_tokens, stream=False)
            )
            response.raise_for_status()
            data = response.json()
            return (
                data["usage"]["completion_tokens"],
                data["choices"][0]["message"]["content"],
                None,
            )

        return run_timed("http", prompts, one)


def bench_http_stream(base: str, prompts: list[str], max_tokens: int) -> ModeResult:
    with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S, headers=NO_CACHE) as client:

        def one(prompt: str) -> tuple[int, str, float | None]:
            reader = StreamReader(time.perf_counter())
            body = chat_body(prompt, max_tokens, stream=True)
            with client.stream("POST", "/v1/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    reader.feed(line)
            if reader.tokens < 0:
                raise RuntimeError("the stream ended without a usage chunk")
            return reader.tokens, reader.text, reader.first_content_s

        return run_timed("http-stream", prompts, one)


# --- report ------------------------------------------------------------------------------------


def report(results: list[ModeResult], max_tokens: int, threads: int) -> bool:
    raw = results[0]
    log("")
    log(
        f"model {MODEL}, greedy, max_tokens={max_tokens}, torch threads={threads}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, {len(raw.tokens)} requests/mode"
    )
    header = f"{'mode':<12} {'requests':>8} {'tokens':>7} {'seconds':>8} {'tok/s':>7} {'vs raw':>7}"
    log(header)
    log("-" * len(header))
    for r in results:
        ratio = r.tokens_per_s / raw.tokens_per_s if raw.tokens_per_s else 0.0
        extra = ""
        if r.first_token_s:
            mean_ms = 1000 * sum(r.first_token_s) / len(r.first_token_s)
            extra = f"   (mean time to first content {mean_ms:.0f} ms)"
        log(
            f"{r.name:<12} {len(r.tokens):>8} {r.total_tokens:>7} {r.seconds:>8.2f} "
            f"{r.tokens_per_s:>7.2f} {ratio:>6.3f}x{extra}"
        )
    log("")
    same_counts = True
    for r in results[1:]:
        if r.tokens != raw.tokens:
            same_counts = False
            log(f"token counts DIFFER: {r.name} {r.tokens} vs raw {raw.tokens}")
        differing = [i for i, (a, b) in enumerate(zip(r.texts, raw.texts, strict=True)) if a != b]
        if differing:
            log(f"note: {r.name} text differs from raw for requests {differing}")
    if same_counts:
        log(f"token counts identical in all modes: {raw.tokens}")
    engine = next(r for r in results if r.name == "engine")
    ratio = engine.tokens_per_s / raw.tokens_per_s if raw.tokens_per_s else 0.0
    passed = ratio >= TARGET_RATIO
    log(f"{'PASS' if passed else 'FAIL'}: engine/raw = {ratio:.3f}x (target >= {TARGET_RATIO}x)")
    return passed and same_counts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts = workload(args.rounds)
    log(f"loading {MODEL} …")
    started = time.perf_counter()
    loaded = load_causal_lm(LLMDeploymentConfig(model=MODEL), CACHE_DIR)
    log(f"loaded in {time.perf_counter() - started:.1f} s on {loaded.device} ({loaded.dtype})")
    results = [
        bench_raw(loaded, prompts, args.max_tokens),
        bench_engine(loaded, prompts, args.max_tokens, args.threads),
    ]
    if not args.no_http:
        port = args.port or free_port()
        with blaze_server(port, args.threads) as base:
            results.append(bench_http(base, prompts, args.max_tokens))
            if not args.no_stream:
                results.append(bench_http_stream(base, prompts, args.max_tokens))
    return 0 if report(results, args.max_tokens, args.threads) else 1


if __name__ == "__main__":
    sys.exit(main())
