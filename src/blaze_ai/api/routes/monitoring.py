"""Monitoring endpoints: ``/metrics`` for Prometheus, the live dashboard and its data.

- ``GET /metrics``: every metric in Prometheus' text format (public on a loopback address or
  with ``metrics.public``, otherwise the admin key's: ``api/auth.py``).
- ``GET /dashboard``: the dashboard page, and ``/dashboard/assets/*`` its script, style and
  vendored chart library (static files inside the package; no build step). The page holds no
  data: it asks ``/admin/dashboard`` for it, with the admin key when auth is on.
- ``GET /admin/dashboard``: deployments (with their p50/p99 latency over the latency window),
  served models, the cache's figures and the history's points (``since``: only newer ones).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from blaze_ai.api.openapi import error_responses
from blaze_ai.api.routes.admin import cache_figures_of
from blaze_ai.api.schemas.ops import DashboardData
from blaze_ai.api.state import gateway_of, monitoring_of
from blaze_ai.errors import InvalidRequestError
from blaze_ai.gateway import Gateway
from blaze_ai.observability.history import as_dicts

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
"""The dashboard's page."""
DASHBOARD_ASSETS = DASHBOARD / "assets"
"""Its script, style and vendored chart library, served under ``/dashboard/assets/``."""
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
REVALIDATE = {"Cache-Control": "no-cache"}
"""The page and its assets may be cached, but are revalidated (ETag) before each use, so a
browser never runs an upgraded page with the scripts of the previous Blaze."""

PAGE_POLICY = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
"""The dashboard page loads only its own files (no inline script or style) and may not be
framed: defence in depth for the admin key it holds in sessionStorage."""

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every metric, in Prometheus' text exposition format."""
    body = await monitoring_of(request).exposition()
    return Response(body, media_type=PROMETHEUS_TEXT)


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(DASHBOARD / "index.html", headers={**REVALIDATE, **PAGE_POLICY})


class DashboardAssets(StaticFiles):
    """The dashboard's static files (``/dashboard/assets/*``), revalidated before each use."""

    def __init__(self) -> None:
        super().__init__(directory=DASHBOARD_ASSETS)

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        """The file's response (200, or 304 when the browser's copy is current), with
        :data:`REVALIDATE`."""
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(REVALIDATE)
        return response


@router.get(
    "/admin/dashboard",
    response_model=DashboardData,
    responses=error_responses(
        described={
            400: "Metrics are off (`metrics.enabled: false`).",
            401: "No API key, or not a valid one (`code`: `invalid_api_key`).",
            403: "The admin API needs the admin key.",
        }
    ),
)
async def dashboard_data(
    request: Request,
    since: float | None = Query(default=None, allow_inf_nan=False),
) -> dict[str, Any]:
    """Everything the dashboard shows: deployments with their latency percentiles (ms),
    models, cache figures, and the chart points newer than ``since`` (Unix seconds)."""
    monitoring = monitoring_of(request)
    history = monitoring.history
    if history is None:
        raise InvalidRequestError("metrics are off (metrics.enabled: false)")
    gateway = gateway_of(request)
    latency = history.deployment_latency()
    deployments = []
    for status in gateway.deployment_status():
        p50, p99 = latency.get(status.name, (None, None))
        row = dataclasses.asdict(status)
        row["latency_p50_ms"] = None if p50 is None else round(p50 * 1000, 3)
        row["latency_p99_ms"] = None if p99 is None else round(p99 * 1000, 3)
        deployments.append(row)
    return {
        "now": time.time(),
        "interval_s": history.interval_s,
        "window_s": history.window_s,
        "auth": request.app.state.tenancy is not None,
        "models": _models(gateway),
        "deployments": deployments,
        "cache": await cache_figures_of(gateway),
        "points": as_dicts(history.points(since)),
    }


def _models(gateway: Gateway) -> list[dict[str, Any]]:
    return [
        {
            "name": g.name,
            "aliases": list(g.aliases),
            "kind": "images" if gateway.serves_images(g) else "text",
        }
        for g in gateway.models
    ]
