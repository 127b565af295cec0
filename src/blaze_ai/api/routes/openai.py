"""The OpenAI-compatible routes: chat, completions and models."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from blaze_ai.api.cache_control import STATUS_HEADER, cache_directives
from blaze_ai.api.direct_route import DirectRoute, openapi_body, parse_body
from blaze_ai.api.disconnect import ClientDisconnectedError, cancel_on_disconnect
from blaze_ai.api.openai_format import (
    ResponseMeta,
    chat_completion_body,
    chat_stream_events,
    completion_stream_events,
    guard_stream,
    text_completion_body,
)
from blaze_ai.api.schemas.chat import ChatCompletionRequest
from blaze_ai.api.schemas.completions import CompletionRequestBody
from blaze_ai.api.sse import sse_response
from blaze_ai.gateway import Gateway, ModelGroup, RoutingContext
from blaze_ai.types import CacheInfo, CacheStatus, GatewayStreamItem, StreamItem, Usage

router = APIRouter()


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _routing(request: Request) -> RoutingContext:
    client = request.client
    return RoutingContext(headers=request.headers, client_ip=client.host if client else None)


def _meta(prefix: str, model: str) -> ResponseMeta:
    return ResponseMeta(
        id=f"{prefix}-{os.urandom(12).hex()}", created=int(time.time()), model=model
    )


def _usage_recorder(request: Request) -> Callable[[Usage], None]:
    def record(usage: Usage) -> None:
        request.state.log["prompt_tokens"] = usage.prompt_tokens
        request.state.log["completion_tokens"] = usage.completion_tokens

    return record


async def _open_stream(
    stream: AsyncIterator[GatewayStreamItem],
) -> tuple[CacheStatus | None, AsyncIterator[StreamItem]]:
    """Pull the first item now, so that errors before any output get a real HTTP status.

    Returns the cache status the stream opened with (None without a cache) and its items.
    """
    status = None
    item = await anext(stream)
    if isinstance(item, CacheInfo):
        status = item.status
        item = await anext(stream)
    assert not isinstance(item, CacheInfo), "a stream has one CacheInfo, first"
    first: StreamItem = item

    async def rest() -> AsyncIterator[StreamItem]:
        yield first
        async for item in stream:
            if not isinstance(item, CacheInfo):
                yield item

    return status, rest()


async def _without_info(stream: AsyncIterator[GatewayStreamItem]) -> AsyncIterator[StreamItem]:
    """``stream`` less its :class:`CacheInfo` item."""
    async for item in stream:
        if not isinstance(item, CacheInfo):
            yield item


_STATUS_ORDER = tuple(CacheStatus)  # hit-memory, hit-disk, hit-redis, miss, bypass


def _cache_headers(request: Request, *statuses: CacheStatus | None) -> dict[str, str]:
    """``X-Blaze-Cache`` for a response made of parts: the status of its least cached part."""
    known = [s for s in statuses if s is not None]
    if not known:
        return {}
    status = max(known, key=_STATUS_ORDER.index)
    request.state.log["cache"] = status.value
    return {STATUS_HEADER: status.value}


async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions, streamed (SSE) or not."""
    body = await parse_body(request, ChatCompletionRequest)
    gateway = _gateway(request)
    req = body.to_internal(request.state.request_id, cache_directives(body.cache, request.headers))
    request.state.log.update(model=body.model, stream=body.stream)
    meta = _meta("chatcmpl", body.model)
    if body.stream:
        status, items = await _open_stream(gateway.stream(req, _routing(request)))
        events = chat_stream_events(
            meta,
            items,
            n=body.n,
            include_usage=body.include_usage,
            on_usage=_usage_recorder(request),
        )
        return sse_response(guard_stream(events), _cache_headers(request, status))
    try:
        result = await cancel_on_disconnect(request, gateway.generate(req, _routing(request)))
    except ClientDisconnectedError:
        return Response(status_code=499)
    _usage_recorder(request)(result.usage)
    headers = _cache_headers(request, result.cache_status)
    return JSONResponse(chat_completion_body(meta, result), headers=headers)


async def create_completion(request: Request) -> Response:
    """OpenAI (legacy) text completions for one prompt or a list of prompts."""
    body = await parse_body(request, CompletionRequestBody)
    gateway = _gateway(request)
    directives = cache_directives(body.cache, request.headers)
    reqs = body.to_internal(request.state.request_id, directives)
    ctx = _routing(request)
    request.state.log.update(model=body.model, stream=body.stream)
    meta = _meta("cmpl", body.model)
    prompts = body.prompts()
    if body.stream:
        # X-Blaze-Cache of a streamed list of prompts describes the first prompt's answer:
        # the others are looked up after the headers are sent.
        status, first = await _open_stream(gateway.stream(reqs[0], ctx))
        streams: list[Callable[[], AsyncIterator[StreamItem]]] = [lambda: first]
        streams += [lambda r=r: _without_info(gateway.stream(r, ctx)) for r in reqs[1:]]  # type: ignore[misc]
        events = completion_stream_events(
            meta,
            streams,
            prompts,
            n=body.n,
            echo=body.echo,
            include_usage=body.include_usage,
            on_usage=_usage_recorder(request),
        )
        return sse_response(guard_stream(events), _cache_headers(request, status))
    try:
        results = await cancel_on_disconnect(
            request, asyncio.gather(*(gateway.generate(r, ctx) for r in reqs))
        )
    except ClientDisconnectedError:
        return Response(status_code=499)
    response = text_completion_body(meta, results, prompts, echo=body.echo)
    request.state.log.update(
        prompt_tokens=response["usage"]["prompt_tokens"],
        completion_tokens=response["usage"]["completion_tokens"],
    )
    headers = _cache_headers(request, *(r.cache_status for r in results))
    return JSONResponse(response, headers=headers)


def install_hot_routes(app: FastAPI) -> None:
    """Add the POST endpoints as :class:`DirectRoute` routes on the app itself.

    They are added to the app's own router, not through ``include_router``: FastAPI runs
    included routes through its own request handler, which is what ``DirectRoute`` skips.
    """
    for path, endpoint, schema in (
        ("/v1/chat/completions", create_chat_completion, ChatCompletionRequest),
        ("/v1/completions", create_completion, CompletionRequestBody),
    ):
        app.router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            route_class_override=DirectRoute,
            openapi_extra=openapi_body(schema),
        )


def _model_card(group: ModelGroup) -> dict[str, Any]:
    return {"id": group.name, "object": "model", "created": group.created, "owned_by": "blaze"}


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    """The served models (names only; aliases resolve but are not listed)."""
    return {"object": "list", "data": [_model_card(g) for g in _gateway(request).models]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    """One served model, by name or alias; 404 ``model_not_found`` otherwise."""
    return _model_card(_gateway(request).resolve(model_id))
