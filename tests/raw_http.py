"""Raw HTTP/1.1 over asyncio streams, for tests that misbehave on purpose (slow heads, stalled
bodies, huge headers, idle connections), which no well-behaved client can send."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class RawResponse:
    """One parsed response; ``headers`` lower-cased; ``closed_after_s``: see ``read_answer``."""

    status: int
    headers: dict[str, str]
    body: bytes
    closed_after_s: float | None = None


def request_head(path: str = "/health", *, method: str = "GET", extra: str = "") -> bytes:
    """``METHOD path HTTP/1.1`` with a Host header, ``extra`` header lines, and the blank line."""
    return f"{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}\r\n".encode()


async def connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_response(reader: asyncio.StreamReader, timeout_s: float = 10.0) -> RawResponse:
    """Read one response with a ``Content-Length`` body.

    Raises:
        asyncio.TimeoutError: nothing complete within ``timeout_s`` seconds.
        asyncio.IncompleteReadError: the connection closed before the response ended.
    """
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await asyncio.wait_for(reader.readexactly(length), timeout_s)
    return RawResponse(int(status_line.split()[1]), headers, body)


async def closed_within(reader: asyncio.StreamReader, timeout_s: float) -> float | None:
    """Seconds until the server closes the connection (reading and dropping what it sends),
    or None if it is still open after ``timeout_s`` seconds."""
    started = time.perf_counter()
    deadline = started + timeout_s
    while (left := deadline - time.perf_counter()) > 0:
        try:
            data = await asyncio.wait_for(reader.read(65536), left)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return time.perf_counter() - started
        if not data:
            return time.perf_counter() - started
    return None


async def read_answer(reader: asyncio.StreamReader, timeout_s: float) -> RawResponse | None:
    """The response the server sends before it closes the connection, with ``closed_after_s``
    (None if still open after ``timeout_s`` s); None if it closed without answering.

    Raises:
        asyncio.TimeoutError: no response within ``timeout_s`` seconds.
    """
    started = time.perf_counter()
    try:
        response = await read_response(reader, timeout_s)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None
    closed = await closed_within(reader, max(0.0, timeout_s - (time.perf_counter() - started)))
    total = None if closed is None else time.perf_counter() - started
    return RawResponse(response.status, response.headers, response.body, total)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``, ignoring a connection the server has already reset."""
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
