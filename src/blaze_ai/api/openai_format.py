"""Shape internal results into OpenAI response bodies and SSE streams (no HTTP here).

Stream contract (OpenAI's): every chunk of one response has the same ``id`` and ``created``;
each choice's first delta carries ``role``; ``finish_reason`` is null until the choice's last
chunk; with ``stream_options.include_usage`` every chunk has ``"usage": null`` and one extra
chunk with ``choices: []`` and the usage comes before ``data: [DONE]``, otherwise chunks carry
no usage field. An error after the stream started is sent as a ``data: {"error": ...}`` event,
the last of the stream: no ``data: [DONE]`` follows it (case
``stream-fallback-before-content.md``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blaze_ai.api.sse import DONE, encode_event
from blaze_ai.errors import BlazeError
from blaze_ai.streams import aclose
from blaze_ai.types import (
    CacheInfo,
    CacheStatus,
    GatewayStreamItem,
    StreamItem,
    TextChunk,
    TextResult,
    Usage,
)

logger = logging.getLogger(__name__)

UsageSink = Callable[[Usage], None]


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """What every body or chunk of one response repeats."""

    id: str
    created: int
    model: str


def usage_dict(usage: Usage) -> dict[str, Any]:
    """OpenAI's ``usage`` object; ``prompt_tokens_details.cached_tokens`` counts the prompt
    tokens served from a cache (all of them on a cache hit)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def add_usage(usages: Sequence[Usage]) -> Usage:
    """The sum of several usages (one per prompt of a completion request)."""
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in usages),
        completion_tokens=sum(u.completion_tokens for u in usages),
        cached_tokens=sum(u.cached_tokens for u in usages),
    )


def chat_completion_body(meta: ResponseMeta, result: TextResult) -> dict[str, Any]:
    """The ``chat.completion`` object."""
    choices = [
        {
            "index": c.index,
            "message": {"role": "assistant", "content": c.text, "refusal": None},
            "logprobs": None,
            "finish_reason": c.finish_reason.value,
        }
        for c in result.choices
    ]
    return {
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage_dict(result.usage),
    }


def text_completion_body(
    meta: ResponseMeta, results: Sequence[TextResult], prompts: Sequence[str], *, echo: bool
) -> dict[str, Any]:
    """The ``text_completion`` object; choice ``index`` is ``prompt_index * n + choice``."""
    choices = []
    for p, (prompt, result) in enumerate(zip(prompts, results, strict=True)):
        n = len(result.choices)
        for c in result.choices:
            choices.append(
                {
                    "index": p * n + c.index,
                    "text": (prompt if echo else "") + c.text,
                    "logprobs": None,
                    "finish_reason": c.finish_reason.value,
                }
            )
    return {
        "id": meta.id,
        "object": "text_completion",
        "created": meta.created,
        "model": meta.model,
        "choices": choices,
        "usage": usage_dict(add_usage([r.usage for r in results])),
    }


class _ChunkWriter:
    """Builds the chunks of one stream (``chat.completion.chunk`` or ``text_completion``)."""

    def __init__(self, meta: ResponseMeta, obj: str, *, include_usage: bool) -> None:
        self._meta = meta
        self._object = obj
        self.include_usage = include_usage

    def event(self, choices: list[dict[str, Any]]) -> bytes:
        body: dict[str, Any] = {
            "id": self._meta.id,
            "object": self._object,
            "created": self._meta.created,
            "model": self._meta.model,
            "choices": choices,
        }
        if self.include_usage:
            body["usage"] = None
        return encode_event(body)

    def usage_event(self, usage: Usage) -> bytes:
        body = {
            "id": self._meta.id,
            "object": self._object,
            "created": self._meta.created,
            "model": self._meta.model,
            "choices": [],
            "usage": usage_dict(usage),
        }
        return encode_event(body)


@dataclass(frozen=True, slots=True)
class OpenedStream:
    """A gateway stream whose first item was already pulled, so that an error before any output
    still got an HTTP status.

    Attributes:
        cache_status: what the stream opened with (None without a cache).
        first: its first text chunk or usage.
        rest: the items after ``first`` (no further :class:`CacheInfo`).
    """

    cache_status: CacheStatus | None
    first: StreamItem
    rest: AsyncIterator[GatewayStreamItem]


async def open_stream(stream: AsyncIterator[GatewayStreamItem]) -> OpenedStream:
    """Pull ``stream``'s cache status and first item now; its errors raise here.

    Raises:
        BlazeError: the gateway could not start the stream.
    """
    status = None
    item = await anext(stream)
    if isinstance(item, CacheInfo):
        status = item.status
        item = await anext(stream)
    assert not isinstance(item, CacheInfo), "a stream has one CacheInfo, first"
    return OpenedStream(status, item, stream)


async def chat_stream_events(
    meta: ResponseMeta,
    stream: OpenedStream,
    *,
    n: int,
    include_usage: bool,
    on_usage: UsageSink,
) -> AsyncIterator[bytes]:
    """SSE events of a streamed chat completion, ``[DONE]`` included.

    An error raised mid-stream becomes one error event, the last of the stream (no ``[DONE]``).
    Closing the events closes the gateway stream at once.
    """
    writer = _ChunkWriter(meta, "chat.completion.chunk", include_usage=include_usage)
    try:
        for index in range(n):
            yield writer.event([_chat_choice(index, {"role": "assistant", "content": ""}, None)])
        event = _chat_event(writer, stream.first, on_usage)
        if event is not None:
            yield event
        async for item in stream.rest:
            event = _chat_event(writer, item, on_usage)
            if event is not None:
                yield event
    except Exception as exc:
        yield _error_event(exc)
        return
    finally:
        await aclose(stream.rest)
    yield DONE


def _chat_event(writer: _ChunkWriter, item: GatewayStreamItem, on_usage: UsageSink) -> bytes | None:
    """The event of one stream item (None for items that show nothing)."""
    if isinstance(item, CacheInfo):
        return None
    if isinstance(item, Usage):
        on_usage(item)
        return writer.usage_event(item) if writer.include_usage else None
    if item.text or item.finish_reason is not None:
        delta = {"content": item.text} if item.text else {}
        return writer.event([_chat_choice(item.index, delta, item)])
    return None


async def completion_stream_events(
    meta: ResponseMeta,
    first: OpenedStream,
    more: Sequence[Callable[[], AsyncIterator[GatewayStreamItem]]],
    prompts: Sequence[str],
    *,
    n: int,
    echo: bool,
    include_usage: bool,
    on_usage: UsageSink,
) -> AsyncIterator[bytes]:
    """SSE events of a streamed text completion: the prompts' streams one after another (the
    first already opened, the others opened in turn). Errors end it as in
    :func:`chat_stream_events`."""
    writer = _ChunkWriter(meta, "text_completion", include_usage=include_usage)
    usages: list[Usage] = []
    try:
        for p, prompt in enumerate(prompts):
            if echo:
                for index in range(n):
                    yield writer.event([_text_choice(p * n + index, prompt, None)])
            if p == 0:
                event = _text_event(writer, p * n, first.first, usages)
                if event is not None:
                    yield event
            items = first.rest if p == 0 else more[p - 1]()
            try:
                async for item in items:
                    event = _text_event(writer, p * n, item, usages)
                    if event is not None:
                        yield event
            finally:
                await aclose(items)
        usage = add_usage(usages)
        on_usage(usage)
        if include_usage:
            yield writer.usage_event(usage)
    except Exception as exc:
        yield _error_event(exc)
        return
    finally:
        await aclose(first.rest)
    yield DONE


def _text_event(
    writer: _ChunkWriter, offset: int, item: GatewayStreamItem, usages: list[Usage]
) -> bytes | None:
    if isinstance(item, CacheInfo):
        return None
    if isinstance(item, Usage):
        usages.append(item)
        return None
    if item.text or item.finish_reason is not None:
        return writer.event([_text_choice(offset + item.index, item.text, item)])
    return None


def _error_event(exc: Exception) -> bytes:
    """The error event that ends a stream which already started."""
    if isinstance(exc, BlazeError):
        logger.warning("stream_failed", extra={"error_type": exc.error_type, "error": exc.message})
        return encode_event(exc.to_dict())
    logger.exception("stream_failed_unexpectedly", exc_info=exc)
    return encode_event(BlazeError("internal server error").to_dict())


def _chat_choice(index: int, delta: dict[str, Any], chunk: TextChunk | None) -> dict[str, Any]:
    reason = chunk.finish_reason.value if chunk and chunk.finish_reason else None
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}


def _text_choice(index: int, text: str, chunk: TextChunk | None) -> dict[str, Any]:
    reason = chunk.finish_reason.value if chunk and chunk.finish_reason else None
    return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}
