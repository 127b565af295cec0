"""Interleaved rounds of wrk against several Blaze servers, and the table of their medians.

Used by ``bench/gateway.py --auth`` and ``--metrics``: each server in turn for ``rounds``
rounds (so drift on a shared machine hits every mode alike), wrk at concurrency 64,
non-streamed; per mode the median requests/s and CPU per request (CPU seconds of the serving
process over the requests it answered), with ratios and differences to the first mode.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from gateway import BODY, cpu_s, wrk

Figures = dict[str, list[tuple[float, float]]]
"""mode -> one (requests/s, CPU ms per request) per round."""


def run_rounds(
    modes: list[str],
    servers: list[Any],
    headers: list[dict[str, str]],
    duration_s: int,
    rounds: int,
    folder: Path,
) -> Figures:
    """wrk c=64 on each server in turn, ``rounds`` times; the figures of every round."""
    figures: Figures = {mode: [] for mode in modes}
    for round_no in range(rounds):
        for mode, server, header in zip(modes, servers, headers, strict=True):
            print(f"round {round_no + 1}/{rounds}, {mode}: wrk c=64 ...", flush=True)
            url = f"http://127.0.0.1:{server.port}/v1/chat/completions"
            before = cpu_s(server.process.pid)
            result = wrk(url, BODY, 64, duration_s, folder, header)
            cpu_ms = (cpu_s(server.process.pid) - before) * 1000 / result["requests"]
            figures[mode].append((result["rps"], cpu_ms))
    return figures


def medians(figures: Figures) -> dict[str, tuple[float, float]]:
    """Print each mode's median requests/s and CPU per request, as ratios and differences to
    the first mode; return the medians."""
    median = {
        mode: (statistics.median(r for r, _ in rows), statistics.median(c for _, c in rows))
        for mode, rows in figures.items()
    }
    base_rps, base_cpu = next(iter(median.values()))
    print()
    print(f"{'mode':<24}{'req/s c=64':>12}{'ratio':>8}{'CPU/req':>11}{'ratio':>8}{'added':>10}")
    for mode, (rps, cpu) in median.items():
        print(
            f"{mode:<24}{rps:>12.0f}{rps / base_rps:>7.3f}x{cpu:>9.3f}ms"
            f"{cpu / base_cpu:>7.3f}x{cpu - base_cpu:>8.3f}ms"
        )
    return median
