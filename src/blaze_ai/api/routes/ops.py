"""Operational endpoints: liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from blaze_ai.api.schemas.ops import Health, Readiness
from blaze_ai.api.state import gateway_of

router = APIRouter()


@router.get("/health", response_model=Health)
async def health() -> dict[str, str]:
    """Liveness: 200 while the process serves HTTP (even while models load)."""
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Some model has no ready deployment."}},
)
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 when every served model has a deployment ready, else 503 with states."""
    gateway = gateway_of(request)
    models = {g.name: {d.name: d.engine.state.value for d in g.deployments} for g in gateway.models}
    status = 200 if gateway.ready else 503
    return JSONResponse(
        {"status": "ready" if gateway.ready else "starting", "models": models}, status
    )
