"""Admin endpoints: what the gateway is doing, per deployment."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from blaze_ai.gateway import Gateway

router = APIRouter(prefix="/admin")


@router.get("/deployments")
async def list_deployments(request: Request) -> dict[str, Any]:
    """Per deployment: engine and breaker state, health, load, EWMA latency, errors, restarts."""
    gateway: Gateway = request.app.state.gateway
    return {"object": "list", "data": [asdict(s) for s in gateway.deployment_status()]}
