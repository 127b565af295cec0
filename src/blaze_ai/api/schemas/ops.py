"""Bodies of the operational routes: ``/health``, ``/ready`` and ``/admin/*``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from blaze_ai.cache.stats import LevelStats
from blaze_ai.gateway.status import DeploymentStatus

EngineStateName = Literal["starting", "ready", "degraded", "failed", "stopped"]
"""An engine's state (:class:`blaze_ai.engines.base.EngineState`)."""

CacheLevelName = Literal["memory", "disk", "redis"]


class OpsBody(BaseModel):
    """Base of these bodies: no field beyond those declared."""

    model_config = ConfigDict(extra="forbid")


class Health(OpsBody):
    """Liveness: the process serves HTTP."""

    status: Literal["ok"]


class Readiness(OpsBody):
    """``status`` is ``ready`` when every served model has a ready deployment; ``models``
    maps each model to its deployments' engine states."""

    status: Literal["ready", "starting"]
    models: dict[str, dict[str, EngineStateName]]


class DeploymentList(OpsBody):
    """``GET /admin/deployments``: one entry per deployment (latency in milliseconds)."""

    object: Literal["list"]
    data: list[DeploymentStatus]


class CacheFigures(OpsBody):
    """``GET /admin/cache``: answers per ``X-Blaze-Cache`` status since start, and each
    level's figures (``enabled`` false and nothing else when no level is configured)."""

    enabled: bool
    outcomes: dict[str, int]
    levels: list[LevelStats]


class CacheClearBody(OpsBody):
    """``POST /admin/cache/clear`` body: ``model`` (name or alias; default all models) and
    ``levels`` (default all levels)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None
    levels: list[CacheLevelName] | None = None


class CacheCleared(OpsBody):
    """What ``POST /admin/cache/clear`` dropped: the served model's name (null for all) and
    the count per level (null where the level failed, such as Redis down)."""

    model: str | None
    cleared: dict[str, int | None] = Field(description="Level name -> entries dropped.")


class DashboardData(OpsBody):
    """``GET /admin/dashboard``: what the dashboard shows.

    ``deployments`` are ``/admin/deployments``' entries plus ``latency_p50_ms`` and
    ``latency_p99_ms`` over the latency window (null without a successful attempt in it);
    ``points`` are the charts' values per interval, oldest first (rates per second,
    percentiles in seconds, hit ratios per cache level).
    """

    now: float = Field(description="The server's Unix time, seconds.")
    interval_s: float = Field(description="Seconds between two points.")
    window_s: float = Field(description="Seconds of points the server keeps (and the charts show).")
    auth: bool = Field(description="Whether API keys are on.")
    models: list[dict[str, Any]]
    deployments: list[dict[str, Any]]
    cache: CacheFigures
    points: list[dict[str, Any]]
