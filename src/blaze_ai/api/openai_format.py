"""Shape internal results into OpenAI response bodies and SSE streams (no HTTP here).

Stream contract (OpenAI's): every chunk of one response has the same ``id`` and ``created``;
each choice's first delta carries ``role``; ``finish_reason`` is null until the choice's last
chunk; with ``stream_options.include_usage`` every chunk has ``"usage": null`` and one extra
chunk with ``choices: []`` and the usage comes before ``data: [DONE]``, otherwise chunks carry
no usage field. An error after the stream started is sent as a ``data: {"error": ...}`` event.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blaze_ai.api.sse import DONE, encode_event
from blaze_ai.errors import BlazeError
from blaze_ai.types import StreamItem, TextChunk, TextResult, Usage

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
        self._include_usage = include_usage

    def event(self, choices: list[dict[str, Any]]) -> bytes:
        body: dict[str, Any] = {
            "id": self._meta.id,
            "object": self._object,
            "created": self._meta.created,
            "model": self._meta.model,
            "choices": choices,
        }
        if self._include_usage:
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


async def chat_stream_events(
    meta: ResponseMeta,
    items: AsyncIterator[StreamItem],
    *,
    n: int,
    include_usage: bool,
    on_usage: UsageSink,
) -> AsyncIterator[bytes]:
    """SSE events of a streamed chat completion, ``[DONE]`` included."""
    writer = _ChunkWriter(meta, "chat.completion.chunk", include_usage=include_usage)
    for index in range(n):
        yield writer.event([_chat_choice(index, {"role": "assistant", "content": ""}, None)])
    async for item in items:
        if isinstance(item, Usage):
            on_usage(item)
            if include_usage:
                yield writer.usage_event(item)
            continue
        if item.text or item.finish_reason is not None:
            delta = {"content": item.text} if item.text else {}
            yield writer.event([_chat_choice(item.index, delta, item)])
    yield DONE


async def completion_stream_events(
    meta: ResponseMeta,
    streams: Sequence[Callable[[], AsyncIterator[StreamItem]]],
    prompts: Sequence[str],
    *,
    n: int,
    echo: bool,
    include_usage: bool,
    on_usage: UsageSink,
) -> AsyncIterator[bytes]:
    """SSE events of a streamed text completion: the prompts' streams one after another."""
    writer = _ChunkWriter(meta, "text_completion", include_usage=include_usage)
    usages: list[Usage] = []
    for p, (open_stream, prompt) in enumerate(zip(streams, prompts, strict=True)):
        if echo:
            for index in range(n):
                yield writer.event([_text_choice(p * n + index, prompt, None)])
        async for item in open_stream():
            if isinstance(item, Usage):
                usages.append(item)
            elif item.text or item.finish_reason is not None:
                yield writer.event([_text_choice(p * n + item.index, item.text, item)])
    usage = add_usage(usages)
    on_usage(usage)
    if include_usage:
        yield writer.usage_event(usage)
    yield DONE


async def guard_stream(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Pass ``events`` through; an error raised mid-stream becomes an error event + ``[DONE]``."""
    try:
        async for event in events:
            yield event
    except BlazeError as exc:
        logger.warning("stream_failed", extra={"error_type": exc.error_type, "error": exc.message})
        yield encode_event(exc.to_dict())
        yield DONE
    except Exception:
        logger.exception("stream_failed_unexpectedly")
        yield encode_event(BlazeError("internal server error").to_dict())
        yield DONE


def _chat_choice(index: int, delta: dict[str, Any], chunk: TextChunk | None) -> dict[str, Any]:
    reason = chunk.finish_reason.value if chunk and chunk.finish_reason else None
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}


def _text_choice(index: int, text: str, chunk: TextChunk | None) -> dict[str, Any]:
    reason = chunk.finish_reason.value if chunk and chunk.finish_reason else None
    return {"index": index, "text": text, "logprobs": None, "finish_reason": reason}
