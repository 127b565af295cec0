"""What tracing adds to a request: the whole app in-process, over an engine that answers at once.

Modes, each an app of its own, measured in interleaved rounds (the median round is reported):

- ``off``: tracing off (the default), the baseline;
- ``spans``: every span made, ended and handed to an exporter that drops it (no export);
- ``otlp``: the production path, a ``BatchSpanProcessor`` exporting OTLP/HTTP (protobuf) from
  its thread to a receiver in another process (``tracing.otlp_endpoint``);
- ``unsampled``: as ``otlp`` with ``sample_ratio: 0`` (spans made but not recorded).

Per mode: wall-clock and CPU microseconds per request (CPU counts every thread of this process,
the exporter's too), and the difference to ``off``. Requests are sent one at a time through
httpx's ASGI transport, non-streamed and streamed (two chunks and the usage).

Run, here and (``--modes off``) on a baseline checkout to see that ``off`` costs nothing::

    OMP_NUM_THREADS=1 .venv/bin/python bench/tracing.py
    OMP_NUM_THREADS=1 PYTHONPATH=../baseline/src .venv/bin/python bench/tracing.py --modes off
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import structlog
from gateway_calls import InstantEngine  # bench/ is the script's folder

from blaze_ai.api.app import create_app
from blaze_ai.config.schema import Settings
from blaze_ai.devtools.net import free_port
from blaze_ai.gateway import Deployment, Gateway, ModelGroup
from blaze_ai.gateway.admission import Admission

RECEIVER = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
"""An OTLP/HTTP receiver that reads and drops every export (a collector's cheapest answer)."""


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """A receiver process; yields its traces URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(f"http://127.0.0.1:{port}/", content=b"")
                break
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/v1/traces"
    finally:
        process.kill()
        process.wait()


def tracing_for(mode: str, url: str) -> Any:
    """The app's tracing in ``mode`` (None: off); imported here so ``off`` runs on a baseline."""
    if mode == "off":
        return None
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from blaze_ai.config.observability import TracingConfig
    from blaze_ai.observability.tracing import Tracing

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    if mode == "spans":
        return Tracing(TracingConfig(), processor=SimpleSpanProcessor(Drop()))
    ratio = 0.0 if mode == "unsampled" else 1.0
    return Tracing(TracingConfig(otlp_endpoint=url, sample_ratio=ratio))


async def run_round(client: httpx.AsyncClient, requests: int, stream: bool) -> tuple[float, float]:
    """(wall, CPU) microseconds per request over ``requests`` requests sent one at a time."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(requests):
        response = await client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200
    return (
        (time.perf_counter() - wall) / requests * 1e6,
        (time.process_time() - cpu) / requests * 1e6,
    )


async def measure(modes: list[str], requests: int, rounds: int, url: str) -> dict[str, Any]:
    """Per (mode, streamed): the median round's (wall, CPU) microseconds per request."""
    clients, tracings = {}, []
    for mode in modes:
        group = ModelGroup("m", (), (Deployment("m/0", InstantEngine()),), created=0)  # type: ignore[arg-type]
        gateway = Gateway([group], admission=Admission(64), request_timeout_s=5)
        tracing = tracing_for(mode, url)
        tracings.append(tracing)
        extra = {"tracing": tracing} if tracing is not None else {}
        app = create_app(Settings(), gateway, **extra)
        transport = httpx.ASGITransport(app=app)
        clients[mode] = httpx.AsyncClient(transport=transport, base_url="http://blaze")
    samples: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    for stream in (False, True):
        for mode in modes:
            await run_round(clients[mode], requests // 5, stream)  # warm-up
        for _ in range(rounds):
            for mode in modes:
                figures = await run_round(clients[mode], requests, stream)
                samples.setdefault((mode, stream), []).append(figures)
    for client in clients.values():
        await client.aclose()
    for tracing in tracings:
        if tracing is not None:
            await tracing.shutdown()
    return {key: _median(values) for key, values in samples.items()}


def _median(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="off,spans,otlp,unsampled")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the access log is off in the bench of the real server too
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    modes = args.modes.split(",")
    with receiver() as url:
        figures = asyncio.run(measure(modes, args.requests, args.rounds, url))
    print(f"\n{'mode':<11}{'request':<14}{'wall us':>9}{'cpu us':>9}{'+wall us':>10}{'+cpu us':>9}")
    for (mode, stream), (wall, cpu) in figures.items():
        base = figures.get(("off", stream), (wall, cpu))
        kind = "streamed" if stream else "non-streamed"
        print(
            f"{mode:<11}{kind:<14}{wall:>9.0f}{cpu:>9.0f}"
            f"{wall - base[0]:>+10.0f}{cpu - base[1]:>+9.0f}"
        )


if __name__ == "__main__":
    main()
