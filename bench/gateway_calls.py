"""Python function calls per request through the whole app, in-process: a deterministic figure.

On a shared machine the wrk figures of ``bench/gateway.py`` move by 20-40% between runs; the
number of Python calls a request makes through the ASGI app (middleware, route, gateway,
router, a scripted engine answering at once) does not move at all, so it compares two trees
exactly. Calls are counted by :mod:`cProfile`; the ``blaze_ai`` share is the calls made in
Blaze's own modules (the rest is Starlette, FastAPI, pydantic, httpx's ASGI transport).

Run, here and on a baseline checkout, and compare::

    OMP_NUM_THREADS=1 .venv/bin/python bench/gateway_calls.py
    OMP_NUM_THREADS=1 PYTHONPATH=../baseline/src .venv/bin/python bench/gateway_calls.py
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import pstats
from collections.abc import AsyncIterator

import httpx

from blaze_ai.api.app import create_app
from blaze_ai.config.schema import Settings
from blaze_ai.engines.base import EngineLoad, EngineState
from blaze_ai.gateway import Deployment, Gateway, ModelGroup
from blaze_ai.gateway.admission import Admission
from blaze_ai.types import Choice, FinishReason, StreamItem, TextChunk, TextResult, Usage


class InstantEngine:
    """An LLM engine that answers ``ok`` at once (only the gateway's own work is measured)."""

    name = "m/0"
    state = EngineState.READY

    async def start(self) -> None:
        """Nothing to load."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def check_health(self) -> None:
        """Always healthy."""

    def load(self) -> EngineLoad:
        """Never busy."""
        return EngineLoad(0, 0)

    async def generate(self, req: object, deadline: object) -> TextResult:
        """One choice, ``ok``."""
        return TextResult((Choice(0, "ok", FinishReason.STOP),), Usage(1, 1))

    async def stream(self, req: object, deadline: object) -> AsyncIterator[StreamItem]:
        """Two chunks and the usage."""
        yield TextChunk(0, "o")
        yield TextChunk(0, "k", FinishReason.STOP)
        yield Usage(1, 2)


async def calls_per_request(requests: int) -> dict[str, tuple[float, float]]:
    """Per mode: (all calls, calls in blaze_ai) per request, after a warm-up."""
    group = ModelGroup("m", (), (Deployment("m/0", InstantEngine()),), created=0)  # type: ignore[arg-type]
    app = create_app(Settings(), Gateway([group], admission=Admission(64), request_timeout_s=5))
    figures = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://blaze") as client:
        for mode, stream in (("non-streamed", False), ("streamed", True)):
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream}
            for _ in range(50):
                await client.post("/v1/chat/completions", json=body)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(requests):
                await client.post("/v1/chat/completions", json=body)
            profile.disable()
            stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
            total = sum(v[1] for v in stats.values())
            own = sum(v[1] for k, v in stats.items() if "blaze_ai" in k[0])
            figures[mode] = (total / requests, own / requests)
            print(f"{mode}: {requests} requests counted", flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the access log is off in the bench of the real server too
    figures = asyncio.run(calls_per_request(args.requests))
    print(f"\n{'mode':<14}{'calls/request':>15}{'in blaze_ai':>13}")
    for mode, (total, own) in figures.items():
        print(f"{mode:<14}{total:>15.0f}{own:>13.0f}")


if __name__ == "__main__":
    main()
