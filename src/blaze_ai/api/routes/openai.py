"""The OpenAI-compatible routes: chat, completions and models."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from blaze_ai.api.cache_control import STATUS_HEADER, cache_directives
from blaze_ai.api.direct_route import DirectRoute, parse_body
from blaze_ai.api.disconnect import cancel_on_disconnect
from blaze_ai.api.openai_format import (
    ResponseMeta,
    chat_completion_body,
    chat_stream_events,
    completion_stream_events,
    open_stream,
    text_completion_body,
)
from blaze_ai.api.openapi import JsonSchemaMode, error_responses, event_stream, json_body
from blaze_ai.api.schemas.chat import ChatCompletionRequest
from blaze_ai.api.schemas.completions import CompletionRequestBody
from blaze_ai.api.schemas.responses import (
    ChatCompletion,
    ChatCompletionChunk,
    ModelCard,
    ModelList,
    TextCompletion,
    TextCompletionChunk,
)
from blaze_ai.api.sse import sse_response
from blaze_ai.api.state import gateway_of, meter_of, routing_of, tenant_of, with_cancellation
from blaze_ai.errors import PermissionDeniedError
from blaze_ai.gateway import ModelGroup
from blaze_ai.types import CacheStatus, Usage

router = APIRouter()


def _meta(prefix: str, model: str) -> ResponseMeta:
    return ResponseMeta(
        id=f"{prefix}-{os.urandom(12).hex()}", created=int(time.time()), model=model
    )


def _usage_recorder(request: Request) -> Callable[[Usage], None]:
    def record(usage: Usage) -> None:
        request.state.log["prompt_tokens"] = usage.prompt_tokens
        request.state.log["completion_tokens"] = usage.completion_tokens

    return record


_STATUS_ORDER = tuple(CacheStatus)  # hit-memory, hit-disk, hit-redis, miss, bypass


def _cache_headers(request: Request, *statuses: CacheStatus | None) -> dict[str, str]:
    """``X-Blaze-Cache`` for a response made of parts: the status of its least cached part."""
    known = [s for s in statuses if s is not None]
    if not known:
        return {}
    status = max(known, key=_STATUS_ORDER.index)
    request.state.log["cache"] = status.value
    return {STATUS_HEADER: status.value}


@with_cancellation
async def create_chat_completion(request: Request) -> Response:
    """OpenAI chat completions, streamed (SSE) or not."""
    body = await parse_body(request, ChatCompletionRequest)
    gateway = gateway_of(request)
    directives = cache_directives(body.cache, request.headers)
    req = body.to_internal(request.state.request_id, directives, tenant_of(request))
    request.state.log.update(model=body.model, stream=body.stream)
    meta = _meta("chatcmpl", body.model)
    if body.stream:
        stream = await cancel_on_disconnect(
            request, open_stream(gateway.stream(req, routing_of(request)))
        )
        events = chat_stream_events(
            meta,
            stream,
            n=body.n,
            include_usage=body.include_usage,
            on_usage=_usage_recorder(request),
        )
        return sse_response(events, _cache_headers(request, stream.cache_status))
    result = await cancel_on_disconnect(request, gateway.generate(req, routing_of(request)))
    _usage_recorder(request)(result.usage)
    headers = _cache_headers(request, result.cache_status)
    return JSONResponse(chat_completion_body(meta, result), headers=headers)


@with_cancellation
async def create_completion(request: Request) -> Response:
    """OpenAI (legacy) text completions for one prompt or a list of prompts."""
    body = await parse_body(request, CompletionRequestBody)
    gateway = gateway_of(request)
    directives = cache_directives(body.cache, request.headers)
    reqs = body.to_internal(request.state.request_id, directives, tenant_of(request))
    ctx = routing_of(request)
    request.state.log.update(model=body.model, stream=body.stream)
    meta = _meta("cmpl", body.model)
    prompts = body.prompts()
    if body.stream:
        # X-Blaze-Cache of a streamed list of prompts describes the first prompt's answer:
        # the others are looked up after the headers are sent.
        first = await cancel_on_disconnect(request, open_stream(gateway.stream(reqs[0], ctx)))
        more = [functools.partial(gateway.stream, r, ctx) for r in reqs[1:]]
        events = completion_stream_events(
            meta,
            first,
            more,
            prompts,
            n=body.n,
            echo=body.echo,
            include_usage=body.include_usage,
            on_usage=_usage_recorder(request),
        )
        return sse_response(events, _cache_headers(request, first.cache_status))
    results = await cancel_on_disconnect(
        request, asyncio.gather(*(gateway.generate(r, ctx) for r in reqs))
    )
    response = text_completion_body(meta, results, prompts, echo=body.echo)
    request.state.log.update(
        prompt_tokens=response["usage"]["prompt_tokens"],
        completion_tokens=response["usage"]["completion_tokens"],
    )
    headers = _cache_headers(request, *(r.cache_status for r in results))
    return JSONResponse(response, headers=headers)


MODEL_ERRORS = error_responses(400, 401, 403, 404, 413, 429, 500, 503, 504)
"""The error answers of a route that calls a model (see ``openapi.ERROR_DESCRIPTIONS``)."""

CACHE_HEADER = {
    STATUS_HEADER: {
        "description": "Where the answer came from, when the model has a response cache.",
        "schema": {"enum": [status.value for status in CacheStatus]},
    }
}

DOCUMENTED_SCHEMAS: tuple[tuple[type[BaseModel], JsonSchemaMode], ...] = (
    (ChatCompletionRequest, "validation"),
    (CompletionRequestBody, "validation"),
    (ChatCompletionChunk, "serialization"),
    (TextCompletionChunk, "serialization"),
)
"""What the hot routes document that FastAPI cannot collect (their bodies and stream chunks)."""


def install_hot_routes(app: FastAPI) -> None:
    """Add the POST endpoints as :class:`DirectRoute` routes on the app itself.

    They are added to the app's own router, not through ``include_router``: FastAPI runs
    included routes through its own request handler, which is what ``DirectRoute`` skips.
    """
    for path, endpoint, body, answer, chunk in (
        (
            "/v1/chat/completions",
            create_chat_completion,
            ChatCompletionRequest,
            ChatCompletion,
            ChatCompletionChunk,
        ),
        (
            "/v1/completions",
            create_completion,
            CompletionRequestBody,
            TextCompletion,
            TextCompletionChunk,
        ),
    ):
        success = {
            "description": f"The {answer.__name__}, or with `stream: true` a stream of "
            f"{chunk.__name__} events ending with `data: [DONE]`.",
            "content": {"text/event-stream": event_stream(chunk)},
            "headers": CACHE_HEADER,
        }
        app.router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            route_class_override=DirectRoute,
            response_model=answer,
            responses={200: success, **MODEL_ERRORS},
            openapi_extra=json_body(body),
        )


def _model_card(group: ModelGroup) -> dict[str, Any]:
    return {"id": group.name, "object": "model", "created": group.created, "owned_by": "blaze"}


def _visible(request: Request, group: ModelGroup) -> bool:
    """Whether the request's key may use ``group`` (always, when auth is off)."""
    meter = meter_of(request)
    return meter is None or meter.principal.may_use(group.name, *group.aliases)


@router.get("/v1/models", response_model=ModelList, responses=error_responses(401))
async def list_models(request: Request) -> dict[str, Any]:
    """The served models the key may use (names only; aliases resolve but are not listed)."""
    groups = [g for g in gateway_of(request).models if _visible(request, g)]
    return {"object": "list", "data": [_model_card(g) for g in groups]}


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelCard,
    responses=error_responses(401, 403, 404),
)
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    """One served model, by name or alias; 404 ``model_not_found`` otherwise, 403 for a model
    the key may not use."""
    group = gateway_of(request).resolve(model_id)
    if not _visible(request, group):
        raise PermissionDeniedError(
            f"this API key may not use the model '{model_id}'", param="model"
        )
    return _model_card(group)
