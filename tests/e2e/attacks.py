"""Abusive HTTP clients over raw sockets, each returning what the server answered and when:
an oversized head, a slowloris head, a stalled body."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from tests.raw_http import RawResponse, close, connect, read_answer, request_head

CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Outcome:
    """The answer (None: closed without one) and the seconds from the attack's start until
    the server had answered and closed the connection (None: still open at the end)."""

    answer: RawResponse | None
    closed_after_s: float | None


async def huge_header(port: int, header_bytes: int = 64 * 1024) -> Outcome:
    """A GET whose one header holds ``header_bytes`` bytes, sent at once."""
    started = time.perf_counter()
    reader, writer = await connect(port)
    writer.write(request_head(extra=f"X-Huge: {'h' * header_bytes}\r\n"))
    return await _outcome(reader, writer, started, timeout_s=10.0)


async def slowloris(port: int, byte_every_s: float, give_up_s: float) -> Outcome:
    """A chat request whose head is sent one byte every ``byte_every_s`` seconds."""
    started = time.perf_counter()
    reader, writer = await connect(port)

    async def trickle() -> None:
        for byte in request_head(CHAT_PATH, method="POST", extra="Content-Length: 2\r\n"):
            writer.write(bytes([byte]))
            await asyncio.sleep(byte_every_s)

    sender = asyncio.create_task(trickle())
    try:
        return await _outcome(reader, writer, started, timeout_s=give_up_s)
    finally:
        sender.cancel()


async def stalled_body(port: int, give_up_s: float) -> Outcome:
    """A chat request that declares 1000 body bytes, sends 10, and stalls."""
    started = time.perf_counter()
    reader, writer = await connect(port)
    head = request_head(CHAT_PATH, method="POST", extra="Content-Length: 1000\r\n")
    writer.write(head + b'{"model": ')
    return await _outcome(reader, writer, started, timeout_s=give_up_s)


async def _outcome(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, started: float, timeout_s: float
) -> Outcome:
    try:
        answer = await read_answer(reader, timeout_s)
    except TimeoutError:
        return Outcome(None, None)  # neither answered nor closed
    finally:
        await close(writer)
    closed = None
    if answer is None or answer.closed_after_s is not None:
        closed = time.perf_counter() - started
    return Outcome(answer, closed)
