"""``bench/gateway.py --metrics``: Blaze with metrics off vs on (issue 13).

Two Blaze servers in front of the same two fake upstreams, the response cache off so every
request is routed: one with ``metrics.enabled: false`` (no request record, no ``/metrics``, no
history, no overhead header), one with metrics on, the dashboard's history sampling every 2 s
and a Prometheus-like scraper reading ``/metrics`` every second. wrk at concurrency 64,
non-streamed, interleaved rounds; the medians' ratio of CPU per request is the figure (target:
at most 1.10x).
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import httpx
from gateway import models_yaml, process
from gateway_compare import medians, run_rounds

from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import start_server

MODES = ["metrics off", "metrics on + history"]
SCRAPE_EVERY_S = 1.0


def _config(folder: Path, upstreams: list[int], *, metrics: bool) -> Path:
    text = models_yaml(upstreams)
    text += "cache:\n  memory: null\n"
    text += f"metrics:\n  enabled: {'true' if metrics else 'false'}\n  history_interval_s: 2\n"
    path = folder / f"blaze-{'on' if metrics else 'off'}.yaml"
    path.write_text(text)
    return path


def _scrape(url: str, stop: threading.Event) -> None:
    """GET ``url`` every ``SCRAPE_EVERY_S`` until ``stop`` is set (a Prometheus stand-in)."""
    with httpx.Client(timeout=5) as client:
        while not stop.wait(SCRAPE_EVERY_S):
            client.get(url).raise_for_status()


def compare_metrics(duration_s: int, rounds: int) -> int:
    """Run the comparison and print it; 0 when CPU per request grows at most 10%."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    upstream_ports = [free_port(), free_port()]
    cmd = [sys.executable, "-m", "blaze_ai.devtools.fake_upstream", "--port"]
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        for port, name in zip(upstream_ports, "ab", strict=True):
            ready = f"http://127.0.0.1:{port}/v1/models"
            stack.enter_context(process([*cmd, str(port), "--name", name], ready, env))
        servers = []
        for mode, metrics in zip(MODES, (False, True), strict=True):
            print(f"starting Blaze, {mode} ...", flush=True)
            config = _config(folder, upstream_ports, metrics=metrics)
            servers.append(
                stack.enter_context(
                    start_server(config=config, env=env, ready_timeout_s=60, discard_output=True)
                )
            )
        scraper = threading.Thread(
            target=_scrape, args=(f"{servers[1].base_url}/metrics", stop), daemon=True
        )
        scraper.start()
        try:
            figures = run_rounds(MODES, servers, [{}, {}], duration_s, rounds, folder)
        finally:
            stop.set()
            scraper.join()
    median = medians(figures)
    ratio = median[MODES[1]][1] / median[MODES[0]][1]
    ok = ratio <= 1.10
    print(f"target <= 1.10x CPU/req with metrics on: {'PASS' if ok else 'FAIL'} ({ratio:.3f}x)")
    return 0 if ok else 1
