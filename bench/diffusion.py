"""Micro-batching of the diffusion engine: images/s one request at a time vs concurrently.

On the embedded model (``builtin:digits``: 25 DDIM steps, guidance 2, 64x64 PNGs), ``--images``
images (one per request, digits 0-9 in turn) are generated in two ways, each after a warm-up:

1. ``sequential``: one request at a time, each waiting for the previous one;
2. ``concurrent``: all requests at once; the engine runs them as micro-batches.

Both are measured through two paths: ``engine`` (``DiffusersEngine.generate_images`` in this
process) and ``http`` (``blaze serve`` as a subprocess serving only the digits model,
``POST /v1/images/generations`` with ``httpx``). Each figure is the best of ``--rounds`` runs.
The acceptance line is http concurrent >= 1.5x sequential. Exit status: 0 when it passes.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python bench/diffusion.py

Options: ``--images 8 --rounds 3 --no-http``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx

from blaze_ai.config.schema import DiffusionDeploymentConfig
from blaze_ai.devtools.server import start_server
from blaze_ai.engines.diffusion.engine import DiffusersEngine
from blaze_ai.engines.diffusion.pipeline_cache import PipelineCache
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ImageRequest

TARGET_RATIO = 1.5
SIZE = 64
CONFIG = (
    "models:\n  - name: digits\n    deployments: [{engine: diffusion, model: 'builtin:digits'}]\n"
)

Generate = Callable[[int], Awaitable[None]]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images (requests) per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP path")
    return parser.parse_args()


async def images_per_s(generate: Generate, images: int, rounds: int, *, concurrent: bool) -> float:
    """Best images/s over ``rounds`` runs of ``images`` one-image requests."""
    await generate(0)  # warm-up
    best = 0.0
    for round_index in range(rounds):
        started = time.perf_counter()
        if concurrent:
            await asyncio.gather(*(generate(i) for i in range(images)))
        else:
            for i in range(images):
                await generate(i)
        rate = images / (time.perf_counter() - started)
        mode = "concurrent" if concurrent else "sequential"
        log(f"  {mode} round {round_index + 1}/{rounds}: {rate:.2f} images/s")
        best = max(best, rate)
    return best


async def bench_engine(images: int, rounds: int) -> tuple[float, float]:
    config = DiffusionDeploymentConfig(engine="diffusion", model="builtin:digits")
    engine = DiffusersEngine("digits/0", config, cache=PipelineCache(2**30))
    await engine.start()

    async def generate(i: int) -> None:
        req = ImageRequest(model="digits", prompt=str(i % 10), width=SIZE, height=SIZE)
        await engine.generate_images(req, Deadline.after(600))

    try:
        sequential = await images_per_s(generate, images, rounds, concurrent=False)
        concurrent = await images_per_s(generate, images, rounds, concurrent=True)
    finally:
        await engine.stop()
    return sequential, concurrent


async def bench_http(base: str, images: int, rounds: int) -> tuple[float, float]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:

        async def generate(i: int) -> None:
            body = {
                "model": "digits",
                "prompt": f"a handwritten digit {i % 10}",
                "size": f"{SIZE}x{SIZE}",
                "response_format": "b64_json",
            }
            response = await client.post("/v1/images/generations", json=body)
            response.raise_for_status()

        sequential = await images_per_s(generate, images, rounds, concurrent=False)
        concurrent = await images_per_s(generate, images, rounds, concurrent=True)
    return sequential, concurrent


@contextlib.contextmanager
def blaze_server() -> Iterator[str]:
    """``blaze serve`` on the digits model only; yields its base URL."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "blaze.yaml"
        config.write_text(CONFIG)
        with start_server(
            Path(folder) / "server.log",
            config=config,
            args=("--log-level", "warning"),
            ready_timeout_s=120.0,
        ) as server:
            yield server.base_url


def report(rows: list[tuple[str, float, float]], images: int) -> bool:
    print(f"\n{images} images of {SIZE}x{SIZE}, one per request, embedded digits model")
    print(f"{'path':<8} {'sequential':>12} {'concurrent':>12} {'ratio':>7}")
    for path, sequential, concurrent in rows:
        ratio = concurrent / sequential
        print(f"{path:<8} {sequential:>8.2f} i/s {concurrent:>8.2f} i/s {ratio:>6.2f}x")
    ratio = rows[-1][2] / rows[-1][1]
    passed = ratio >= TARGET_RATIO
    verdict = "PASS" if passed else "FAIL"
    path = rows[-1][0]
    print(f"{verdict}: {path} concurrent is {ratio:.2f}x sequential (target >= {TARGET_RATIO}x)")
    return passed


def main() -> int:
    args = parse_args()
    log("engine (in process):")
    rows = [("engine", *asyncio.run(bench_engine(args.images, args.rounds)))]
    if not args.no_http:
        log("http (blaze serve):")
        with blaze_server() as base:
            rows.append(("http", *asyncio.run(bench_http(base, args.images, args.rounds))))
    return 0 if report(rows, args.images) else 1


if __name__ == "__main__":
    raise SystemExit(main())
