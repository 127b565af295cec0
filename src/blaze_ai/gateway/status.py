"""Snapshots of a gateway: what ``/admin/deployments`` shows, and what the metrics read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blaze_ai.cache.stats import LevelStats
from blaze_ai.engines.base import DiffusionEngine
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.model_group import ModelGroup
from blaze_ai.observability.samples import (
    CacheLevelSample,
    DeploymentSample,
    GatewaySample,
    ModelSample,
)


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """What ``/admin/deployments`` shows of one deployment (latency in milliseconds).

    ``engine`` is the engine's kind as configured (``llm``, ``diffusion``, ``remote``).
    ``cancelled_total`` is the engine's own count of requests it removed early (local engines);
    ``client_disconnects_total`` counts the attempts the gateway saw cancelled because their
    client hung up, on any engine.
    """

    model: str
    name: str
    engine: str
    engine_state: str
    healthy: bool
    breaker_state: str
    in_flight: int
    queue_depth: int
    batch_size: int
    peak_batch_size: int
    cancelled_total: int
    cached_prompt_tokens_total: int
    ewma_latency_ms: float | None
    error_rate: float
    requests: int
    failures: int
    client_disconnects_total: int
    last_error: str | None
    restarts: int
    weight: float


def deployment_status(groups: Sequence[ModelGroup]) -> list[DeploymentStatus]:
    """A snapshot of every deployment, for ``/admin/deployments``."""
    out = []
    for group in groups:
        for d in group.deployments:
            load = d.engine.load()
            latency = d.counters.ewma_latency_s
            out.append(
                DeploymentStatus(
                    model=group.name,
                    name=d.name,
                    engine=d.kind,
                    engine_state=d.engine.state.value,
                    healthy=d.healthy,
                    breaker_state=d.breaker.state.value,
                    in_flight=d.in_flight,
                    queue_depth=load.queue_depth,
                    batch_size=load.batch_size,
                    peak_batch_size=load.peak_batch_size,
                    cancelled_total=load.cancelled_total,
                    cached_prompt_tokens_total=load.cached_prompt_tokens_total,
                    ewma_latency_ms=None if latency is None else round(latency * 1000, 3),
                    error_rate=round(d.breaker.error_rate(), 4),
                    requests=d.counters.requests,
                    failures=d.counters.failures,
                    client_disconnects_total=d.counters.client_disconnects,
                    last_error=d.counters.last_error or getattr(d.engine, "last_error", None),
                    restarts=d.restarts,
                    weight=d.weight,
                )
            )
    return out


def gateway_sample(
    groups: Sequence[ModelGroup], pending: int, levels: Sequence[LevelStats]
) -> GatewaySample:
    """What the scrape-time metrics read: every deployment and model, the cache ``levels``,
    and the ``pending`` requests (cheap: counters kept anyway, read once)."""
    return GatewaySample(
        deployments=tuple(_deployment_sample(g, d) for g in groups for d in g.deployments),
        models=tuple(
            ModelSample(
                model=g.name,
                retries=g.counters.retries,
                fallbacks=g.counters.fallbacks,
                admission_rejections=g.counters.admission_rejections,
            )
            for g in groups
        ),
        cache_levels=tuple(
            CacheLevelSample(
                level=level.level.value,
                hits=level.hits,
                misses=level.misses,
                size_bytes=level.size_bytes,
                evictions=level.evictions,
            )
            for level in levels
        ),
        pending=pending,
    )


def _deployment_sample(group: ModelGroup, d: Deployment) -> DeploymentSample:
    load = d.engine.load()
    counters = d.counters
    return DeploymentSample(
        model=group.name,
        deployment=d.name,
        images=isinstance(d.engine, DiffusionEngine),
        engine_state=d.engine.state.value,
        healthy=d.healthy,
        breaker_state=d.breaker.state.value,
        in_flight=d.in_flight,
        queue_depth=load.queue_depth,
        batch_size=load.batch_size,
        outcomes={
            "success": counters.successes,
            "failure": counters.failures,
            "rejected": counters.rejected,
            "cancelled": counters.client_disconnects,
        },
        breaker_transitions={str(k): v for k, v in d.breaker.transitions.items()},
        restarts=d.restarts,
        prefill_tokens=load.prefill_tokens_total,
        prefix_cache_hit_tokens=load.cached_prompt_tokens_total,
        prefix_cache_bytes=load.prefix_cache_bytes,
        backpressure_rejections=load.rejected_total,
    )
