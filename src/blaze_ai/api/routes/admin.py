"""Operator endpoints under ``/admin``: deployments, and the response cache's figures and clearing.

With auth on, only the admin key reaches them (``api/auth.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request

from blaze_ai.api.openapi import error_responses
from blaze_ai.api.schemas.ops import CacheClearBody, CacheCleared, CacheFigures, DeploymentList
from blaze_ai.api.state import gateway_of
from blaze_ai.errors import InvalidRequestError
from blaze_ai.gateway import Gateway
from blaze_ai.gateway.response_cache import ResponseCache

router = APIRouter(
    prefix="/admin",
    responses=error_responses(
        described={
            401: "No API key, or not a valid one (`code`: `invalid_api_key`).",
            403: "The admin API needs the admin key.",
        }
    ),
)


@router.get("/deployments", response_model=DeploymentList)
async def list_deployments(request: Request) -> dict[str, Any]:
    """Per deployment: engine and breaker state, health, load, EWMA latency, errors, restarts."""
    gateway = gateway_of(request)
    data = [dataclasses.asdict(s) for s in gateway.deployment_status()]
    return {"object": "list", "data": data}


def _cache(request: Request) -> ResponseCache:
    gateway = gateway_of(request)
    if gateway.cache is None:
        raise InvalidRequestError("the response cache is off (no cache level is configured)")
    return gateway.cache


@router.get("/cache", response_model=CacheFigures)
async def cache_figures(request: Request) -> dict[str, Any]:
    """Answers per ``X-Blaze-Cache`` status since start, and each level's figures."""
    return await cache_figures_of(gateway_of(request))


async def cache_figures_of(gateway: Gateway) -> dict[str, Any]:
    """The :class:`CacheFigures` of ``gateway``'s response cache (``enabled`` false when off)."""
    if gateway.cache is None:
        return {"enabled": False, "outcomes": {}, "levels": []}
    stats = await gateway.cache.stats()
    levels = [dataclasses.asdict(level) for level in stats.levels]
    return {"enabled": True, "outcomes": stats.outcomes, "levels": levels}


@router.post(
    "/cache/clear",
    response_model=CacheCleared,
    responses=error_responses(
        413,
        described={
            400: "The body is invalid, or the response cache is off.",
            404: "No served model has this name or alias (`code`: `model_not_found`).",
        },
    ),
)
async def clear_cache(request: Request, body: CacheClearBody | None = None) -> dict[str, Any]:
    """Drop cached answers of one model (or all) from some levels (or all).

    Returns ``{"cleared": {level: count}}``; a level that failed (Redis down) counts null.
    Raises InvalidRequestError (400) when caching is off, ModelNotFoundError (404) for an
    unknown model.
    """
    body = body or CacheClearBody()
    cache = _cache(request)
    gateway = gateway_of(request)
    model = gateway.resolve(body.model).name if body.model is not None else None
    cleared = await cache.clear(model, body.levels)
    return {"model": model, "cleared": cleared}
