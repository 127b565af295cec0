"""What ``/admin/deployments`` shows: a snapshot of every deployment of a gateway."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blaze_ai.gateway.model_group import ModelGroup


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """What ``/admin/deployments`` shows of one deployment (latency in milliseconds).

    ``cancelled_total`` is the engine's own count of requests it removed early (local engines);
    ``client_disconnects_total`` counts the attempts the gateway saw cancelled because their
    client hung up, on any engine.
    """

    model: str
    name: str
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
                    last_error=d.counters.last_error,
                    restarts=d.restarts,
                    weight=d.weight,
                )
            )
    return out
