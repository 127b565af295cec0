"""Response cache latency over HTTP on the embedded model: a miss vs L1, L2 and L3 hits.

Starts a ``redis-server`` (free loopback port, no persistence) and ``blaze serve`` with all three
cache levels (memory, a temporary disk folder, that Redis), then times whole HTTP exchanges
(``POST /v1/chat/completions`` with ``httpx`` on a kept-alive connection, response read and
JSON-decoded) for greedy chat requests (temperature 0, ``--max-tokens``):

1. ``miss``: ``--misses`` prompts never asked before (the model generates; header ``miss``);
2. ``L1 hit``: one of them again, ``--hits`` times (header ``hit-memory``);
3. ``L2 hit``: the same after ``POST /admin/cache/clear {"levels": ["memory"]}`` (not timed)
   each time, so the disk answers (header ``hit-disk``);
4. ``L3 hit``: the same after clearing memory and disk, so Redis answers (``hit-redis``).

Every response's ``X-Blaze-Cache`` header is checked. The table gives p50, p90 and mean in
milliseconds and each mode's speed-up over a miss (miss p50 / mode p50). Targets: L1 hit p50
under 2 ms and at least 100x faster than a miss; exit status 0 when both hold, else 1.

Run from the repository root (``redis-server`` must be installed; ``make test`` installs it)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/cache.py

Options: ``--max-tokens 64 --misses 8 --hits 300 --level-hits 60 --threads 1``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import start_server

SERVED_NAME = "smollm2"
READY_TIMEOUT_S = 300.0
L1_TARGET_MS = 2.0
SPEEDUP_TARGET = 100.0


def log(message: str) -> None:
    print(f"[bench/cache] {message}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--misses", type=int, default=8, help="timed misses (new prompts)")
    parser.add_argument("--hits", type=int, default=300, help="timed L1 hits")
    parser.add_argument("--level-hits", type=int, default=60, help="timed L2 and L3 hits each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    return parser.parse_args(argv)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A throw-away ``redis-server`` on a free loopback port; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(port, process)
        log(f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_port(port: int, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


@contextlib.contextmanager
def blaze_server(folder: Path, redis_url: str, threads: int) -> Iterator[str]:
    """``blaze serve`` (embedded model, all three cache levels); yields its base URL."""
    config = folder / "blaze.yaml"
    config.write_text(
        f"runtime: {{torch_threads: {threads}}}\n"
        "cache:\n"
        "  memory: {max_bytes: 67108864}\n"
        f"  disk: {{directory: '{folder / 'disk'}'}}\n"
        f"  redis: {{url: '{redis_url}', key_prefix: 'bench:'}}\n"
    )
    with start_server(
        folder / "server.log",
        config=config,
        args=("--log-level", "warning"),
        ready_timeout_s=READY_TIMEOUT_S,
    ) as server:
        log(f"blaze serve ready after {server.ready_after_s:.1f} s")
        yield server.base_url


def chat_body(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": SERVED_NAME,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }


def timed(client: httpx.Client, body: dict[str, Any], expected: str) -> float:
    """Seconds for one whole exchange; checks the status and the ``X-Blaze-Cache`` header."""
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    response.json()
    elapsed = time.perf_counter() - started
    if response.status_code != 200 or response.headers.get("x-blaze-cache") != expected:
        raise RuntimeError(
            f"expected 200 {expected}, got {response.status_code} "
            f"{response.headers.get('x-blaze-cache')}: {response.text[:300]}"
        )
    return elapsed


def run_mode(
    name: str, count: int, one: Callable[[int], float], progress_every: int
) -> list[float]:
    samples = []
    for i in range(count):
        samples.append(one(i))
        if (i + 1) % progress_every == 0 or i + 1 == count:
            p50_ms = statistics.median(samples) * 1000
            log(f"{name}: {i + 1}/{count} done, p50 so far {p50_ms:.3f} ms")
    return samples


def measure(base: str, args: argparse.Namespace) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, timeout=600) as client:
        timed(client, chat_body("Say hello.", args.max_tokens), "miss")  # warm-up
        prompts = [f"In two sentences, tell me one fact about the number {n}." for n in range(99)]
        results["miss"] = run_mode(
            "miss",
            args.misses,
            lambda i: timed(client, chat_body(prompts[i], args.max_tokens), "miss"),
            1,
        )
        body = chat_body(prompts[0], args.max_tokens)
        for _ in range(20):  # warm-up of the hit path
            timed(client, body, "hit-memory")
        results["L1 hit"] = run_mode(
            "L1 hit", args.hits, lambda _: timed(client, body, "hit-memory"), 100
        )

        def after_clear(levels: list[str], expected: str) -> float:
            client.post("/admin/cache/clear", json={"levels": levels}).raise_for_status()
            return timed(client, body, expected)

        results["L2 hit"] = run_mode(
            "L2 hit", args.level_hits, lambda _: after_clear(["memory"], "hit-disk"), 20
        )
        results["L3 hit"] = run_mode(
            "L3 hit",
            args.level_hits,
            lambda _: after_clear(["memory", "disk"], "hit-redis"),
            20,
        )
    return results


def report(results: dict[str, list[float]], args: argparse.Namespace) -> bool:
    miss_p50 = statistics.median(results["miss"])
    print()
    print(f"Response cache over HTTP, embedded model, max_tokens={args.max_tokens}, greedy")
    print(f"{'mode':<8} {'n':>5} {'p50 ms':>10} {'p90 ms':>10} {'mean ms':>10} {'vs miss':>9}")
    for name, samples in results.items():
        p50 = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) > 1 else p50
        mean = statistics.fmean(samples)
        print(
            f"{name:<8} {len(samples):>5} {p50 * 1000:>10.3f} {p90 * 1000:>10.3f} "
            f"{mean * 1000:>10.3f} {miss_p50 / p50:>8.1f}x"
        )
    l1_p50 = statistics.median(results["L1 hit"])
    fast = l1_p50 * 1000 < L1_TARGET_MS
    speedup = miss_p50 / l1_p50
    print()
    print(
        f"L1 hit p50 {l1_p50 * 1000:.3f} ms (target < {L1_TARGET_MS} ms): "
        f"{'PASS' if fast else 'FAIL'}"
    )
    print(
        f"L1 hit {speedup:.0f}x faster than a miss (target >= {SPEEDUP_TARGET:.0f}x): "
        f"{'PASS' if speedup >= SPEEDUP_TARGET else 'FAIL'}"
    )
    return fast and speedup >= SPEEDUP_TARGET


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="blaze-bench-cache-") as tmp:
        folder = Path(tmp)
        with (
            redis_server(folder) as redis_url,
            blaze_server(folder, redis_url, args.threads) as base,
        ):
            results = measure(base, args)
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
