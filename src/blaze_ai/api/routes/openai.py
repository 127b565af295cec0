"""The OpenAI-compatible routes: chat, completions and models."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from blaze_ai.api.parsing import DirectRoute, openapi_body, parse_body
from blaze_ai.api.schemas.chat import ChatCompletionRequest
from blaze_ai.api.schemas.completions import CompletionRequestBody
from blaze_ai.api.serving import (
    ResponseMeta,
    chat_completion_body,
    chat_stream_events,
    completion_stream_events,
    guard_stream,
    text_completion_body,
)
from blaze_ai.api.sse import sse_response
from blaze_ai.gateway import Gateway, ModelGroup, RoutingContext
from blaze_ai.types import StreamItem, Usage

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


async def _primed(stream: AsyncIterator[StreamItem]) -> AsyncIterator[StreamItem]:
    """Pull the first item now, so that errors before any output get a real HTTP status."""
    first = await anext(stream)

    async def rest() -> AsyncIterator[StreamItem]:
        yield first
        async for item in stream:
            yield item

    return rest()


async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions, streamed (SSE) or not."""
    body = await parse_body(request, ChatCompletionRequest)
    gateway = _gateway(request)
    req = body.to_internal(request.state.request_id)
    request.state.log.update(model=body.model, stream=body.stream)
    meta = _meta("chatcmpl", body.model)
    if body.stream:
        items = await _primed(gateway.stream(req, _routing(request)))
        events = chat_stream_events(
            meta,
            items,
            n=body.n,
            include_usage=body.include_usage,
            on_usage=_usage_recorder(request),
        )
        return sse_response(guard_stream(events))
    result = await gateway.generate(req, _routing(request))
    _usage_recorder(request)(result.usage)
    return JSONResponse(chat_completion_body(meta, result))


async def create_completion(request: Request) -> Response:
    """OpenAI (legacy) text completions for one prompt or a list of prompts."""
    body = await parse_body(request, CompletionRequestBody)
    gateway = _gateway(request)
    reqs = body.to_internal(request.state.request_id)
    ctx = _routing(request)
    request.state.log.update(model=body.model, stream=body.stream)
    meta = _meta("cmpl", body.model)
    prompts = body.prompts()
    if body.stream:
        first = await _primed(gateway.stream(reqs[0], ctx))
        streams: list[Callable[[], AsyncIterator[StreamItem]]] = [lambda: first]
        streams += [lambda r=r: gateway.stream(r, ctx) for r in reqs[1:]]  # type: ignore[misc]
        events = completion_stream_events(
            meta,
            streams,
            prompts,
            n=body.n,
            echo=body.echo,
            include_usage=body.include_usage,
            on_usage=_usage_recorder(request),
        )
        return sse_response(guard_stream(events))
    results = await asyncio.gather(*(gateway.generate(r, ctx) for r in reqs))
    response = text_completion_body(meta, results, prompts, echo=body.echo)
    request.state.log.update(
        prompt_tokens=response["usage"]["prompt_tokens"],
        completion_tokens=response["usage"]["completion_tokens"],
    )
    return JSONResponse(response)


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
