"""The load of ``bench/soak.py``: its request mix, and the aiohttp workers that send it.

Each worker picks its next request from ``MIX`` by weight (a seeded random generator per
worker, so a run's mix is reproducible) and checks the answer: a 200, a JSON body with choices
(or images), a stream that ends with ``data: [DONE]`` and carries no error event. Anything else
is an error. A ``hang_up`` share of the streams is abandoned after its first text event: the
client closes its connection, as a user closing a tab does (counted apart, not an error).
The load opens with :func:`prime`: bursts of requests to the local engines.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PROMPTS = (
    "Write a short poem about the sea.",
    "Explain in simple words what a CPU cache is.",
    "Give me three tips for writing clean Python code.",
    "What is the capital of France?",
    "Tell me a joke about cats.",
    "How do airplanes fly?",
    "Why is the sky blue?",
    "Write a haiku about autumn.",
)
"""A small fixed set: the embedded model's prefix cache and the response cache see each prompt
again and again (bounded state), while the fake upstream's requests add a request number."""

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
IMAGES = "/v1/images/generations"
REQUEST_TIMEOUT_S = 120.0
FIRST_ERRORS = 5
"""How many error messages the tally keeps to print."""
PRIME_ROUNDS = 2
"""Rounds of :func:`prime` before the mixed load."""
HUNG_UP = "hung up"
"""What :func:`read_stream` says of a stream it abandoned on purpose (not an error)."""


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of request of the mix.

    Attributes:
        name: its name in the report.
        weight: its share of the requests (relative to the others).
        path: the endpoint.
        model: the served model.
        stream: streamed (SSE) or not.
        temperature: None for the API default (1.0: never cached); 0 is cached.
        numbered: add the request number to the prompt (a new prompt each time).
        hang_up: share of these streams abandoned after the first text event.
    """

    name: str
    weight: float
    path: str
    model: str
    stream: bool = False
    temperature: float | None = None
    numbered: bool = True
    hang_up: float = 0.0


MIX = (
    Kind("fake chat", 25, CHAT, "fake"),
    Kind("fake chat stream", 25, CHAT, "fake", stream=True, hang_up=0.02),
    Kind("fake completion", 10, COMPLETIONS, "fake"),
    Kind("fake completion stream", 10, COMPLETIONS, "fake", stream=True, hang_up=0.02),
    Kind("fake chat cached", 8, CHAT, "fake", temperature=0, numbered=False),
    Kind("fake chat stream cached", 8, CHAT, "fake", stream=True, temperature=0, numbered=False),
    Kind("smollm2 chat", 3, CHAT, "smollm2", temperature=0.7, numbered=False),
    Kind(
        "smollm2 chat stream",
        3,
        CHAT,
        "smollm2",
        stream=True,
        temperature=0.7,
        numbered=False,
        hang_up=0.1,
    ),
    Kind("smollm2 completion", 1.5, COMPLETIONS, "smollm2", temperature=0.7, numbered=False),
    Kind(
        "smollm2 completion stream",
        1.5,
        COMPLETIONS,
        "smollm2",
        stream=True,
        temperature=0.7,
        numbered=False,
        hang_up=0.1,
    ),
    Kind("digits image", 0.5, IMAGES, "digits"),
)


@dataclass
class Tally:
    """What the workers did so far."""

    requests: int = 0
    errors: int = 0
    hangups: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    errors_by_kind: Counter[str] = field(default_factory=Counter)
    first_errors: list[str] = field(default_factory=list)

    def count(self, kind: Kind, error: str | None) -> None:
        """One request of ``kind`` ended; ``error`` says what was wrong with it, if anything
        (:data:`HUNG_UP`: nothing, the client went away on purpose)."""
        self.requests += 1
        self.by_kind[kind.name] += 1
        if error == HUNG_UP:
            self.hangups += 1
        elif error is not None:
            self.errors += 1
            self.errors_by_kind[kind.name] += 1
            if len(self.first_errors) < FIRST_ERRORS:
                self.first_errors.append(f"{kind.name}: {error}")


def request_body(kind: Kind, number: int) -> dict[str, Any]:
    """The JSON body of request ``number`` of ``kind``."""
    if kind.path == IMAGES:
        prompt = f"a handwritten digit {number % 10}"
        return {"model": kind.model, "prompt": prompt, "n": 1, "response_format": "b64_json"}
    prompt = PROMPTS[number % len(PROMPTS)]
    if kind.numbered:
        prompt = f"{prompt} (request {number})"
    body: dict[str, Any] = {"model": kind.model, "max_tokens": 8, "stream": kind.stream}
    if kind.temperature is not None:
        body["temperature"] = kind.temperature
    if kind.path == CHAT:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def check_answer(kind: Kind, status: int, payload: bytes) -> str | None:
    """What is wrong with a whole (non-streamed) answer; None when it is right."""
    if status != 200:
        return f"HTTP {status}: {payload[:200]!r}"
    try:
        data = json.loads(payload)
    except ValueError:
        return f"invalid JSON: {payload[:200]!r}"
    items = data.get("data") if kind.path == IMAGES else data.get("choices")
    return None if items else f"no choices or images: {payload[:200]!r}"


async def read_stream(response: aiohttp.ClientResponse, hang_up: bool) -> str | None:
    """Read an SSE answer to its end, or hang up after its first text event (then
    :data:`HUNG_UP`); what is wrong with it, or None."""
    if response.status != 200:
        return f"HTTP {response.status}: {(await response.read())[:200]!r}"
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            return None
        event = json.loads(line[6:])
        if "error" in event:
            return f"error event: {event['error']}"
        if hang_up and _has_text(event):
            response.close()  # the client goes away mid-stream
            return HUNG_UP
    return "the stream ended before data: [DONE]"


def _has_text(event: dict[str, Any]) -> bool:
    return any(c.get("text") or c.get("delta", {}).get("content") for c in event["choices"])


async def send(
    session: aiohttp.ClientSession, base_url: str, kind: Kind, number: int, hang_up: bool
) -> str | None:
    """Send request ``number`` of ``kind``; what is wrong with its answer, or None."""
    try:
        async with session.post(base_url + kind.path, json=request_body(kind, number)) as response:
            if kind.stream:
                return await read_stream(response, hang_up)
            return check_answer(kind, response.status, await response.read())
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class Load:
    """What to send: ``concurrency`` workers, the ``mix``, until the monotonic time ``until``."""

    base_url: str
    concurrency: int
    until: float
    seed: int = 0
    mix: tuple[Kind, ...] = MIX


async def worker(session: aiohttp.ClientSession, load: Load, index: int, tally: Tally) -> None:
    """Send requests back to back until the monotonic clock reaches ``load.until``."""
    base_url, until, mix = load.base_url, load.until, load.mix
    rng = random.Random(load.seed * 1000 + index)
    number = index * 1_000_000
    weights = [kind.weight for kind in mix]
    while time.monotonic() < until:
        number += 1
        kind = rng.choices(mix, weights)[0]
        hang_up = kind.stream and rng.random() < kind.hang_up
        tally.count(kind, await send(session, base_url, kind, number, hang_up))


def select(prefixes: list[str] | None) -> tuple[Kind, ...]:
    """The kinds of ``MIX`` whose name starts with one of ``prefixes`` (all of them for None).

    Raises:
        ValueError: no kind matches.
    """
    if not prefixes:
        return MIX
    kinds = tuple(k for k in MIX if any(k.name.startswith(p) for p in prefixes))
    if not kinds:
        raise ValueError(f"no request kind starts with {prefixes}")
    return kinds


async def prime(session: aiohttp.ClientSession, load: Load, tally: Tally) -> None:
    """Send ``concurrency`` requests at once of each kind served by a local engine, all kinds
    together, ``PRIME_ROUNDS`` times: the largest batches the mix can build come first (within
    the warm-up), so the memory allocator reaches its high-water mark there and not at a random
    moment later, when a rare burst of local requests would look like growth."""
    local = [kind for kind in load.mix if kind.model != "fake"]
    for round_no in range(PRIME_ROUNDS if local else 0):
        sends = [
            (kind, send(session, load.base_url, kind, round_no * load.concurrency + i, False))
            for kind in local
            for i in range(load.concurrency)
        ]
        errors = await asyncio.gather(*(coroutine for _, coroutine in sends))
        for (kind, _), error in zip(sends, errors, strict=True):
            tally.count(kind, error)


async def run_load(load: Load, tally: Tally) -> None:
    """The workers of ``load`` on one pooled session, until its end, after :func:`prime`."""
    connector = aiohttp.TCPConnector(limit=load.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await prime(session, load, tally)
        await asyncio.gather(*(worker(session, load, i, tally) for i in range(load.concurrency)))
