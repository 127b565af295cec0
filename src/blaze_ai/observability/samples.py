"""The gateway's state at one moment, as the metrics read it at scrape time.

Counters the gateway, its deployments and engines keep anyway (requests per outcome, restarts,
breaker transitions, prefill tokens, cache hits...) are not counted twice on the request path:
:class:`~blaze_ai.observability.metrics.Metrics` turns a :class:`GatewaySample` taken when
``/metrics`` is scraped (and by the dashboard's history) into Prometheus families. The gateway
builds the sample (``gateway/status.py``); this module only describes it, so observability
imports nothing of the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DeploymentSample:
    """One deployment at one moment.

    Attributes:
        model: the served model's canonical name.
        deployment: the deployment's name (``<model>/<index>``).
        images: True for an image (diffusion) engine.
        engine_state: ``starting``, ``ready``, ``degraded``, ``failed`` or ``stopped``.
        healthy: the active health checks' verdict.
        breaker_state: ``closed``, ``half_open`` or ``open``.
        in_flight: attempts (or engine requests) in progress.
        queue_depth: engine requests waiting to start.
        batch_size: sequences (or images) the engine runs together now.
        outcomes: finished attempts per outcome (``success``, ``failure``, ``rejected``,
            ``cancelled``) since start.
        breaker_transitions: transitions of the breaker per state entered, since start.
        restarts: engine restarts by the supervisor.
        prefill_tokens: prompt tokens run through the model by the engine's prefills.
        prefix_cache_hit_tokens: prompt tokens whose keys and values came from the prefix cache.
        prefix_cache_bytes: bytes the prefix cache holds now.
        backpressure_rejections: requests the engine's queue refused (429).
    """

    model: str
    deployment: str
    images: bool
    engine_state: str
    healthy: bool
    breaker_state: str
    in_flight: int
    queue_depth: int
    batch_size: int
    outcomes: Mapping[str, int]
    breaker_transitions: Mapping[str, int]
    restarts: int
    prefill_tokens: int = 0
    prefix_cache_hit_tokens: int = 0
    prefix_cache_bytes: int = 0
    backpressure_rejections: int = 0


@dataclass(frozen=True, slots=True)
class ModelSample:
    """One served model's routing counters since start.

    Attributes:
        model: its canonical name.
        retries: attempts made after a failed one on the same model.
        fallbacks: fallback models tried for requests to this model.
        admission_rejections: requests refused at admission because the gateway held
            ``server.max_pending_requests`` already (429).
    """

    model: str
    retries: int
    fallbacks: int
    admission_rejections: int


@dataclass(frozen=True, slots=True)
class CacheLevelSample:
    """One response-cache level since start.

    Attributes:
        level: ``memory``, ``disk`` or ``redis``.
        hits, misses: lookups this level answered, and could not.
        size_bytes: bytes held now (None where not counted: Redis).
        evictions: entries dropped to stay under the level's bound.
    """

    level: str
    hits: int
    misses: int
    size_bytes: int | None
    evictions: int


@dataclass(frozen=True, slots=True)
class GatewaySample:
    """Everything the scrape-time metrics read, taken at one moment.

    Attributes:
        deployments: every deployment of every served model.
        models: every served model's routing counters.
        cache_levels: the response cache's levels (none when caching is off).
        pending: requests the gateway holds now (admitted, not finished).
    """

    deployments: tuple[DeploymentSample, ...] = ()
    models: tuple[ModelSample, ...] = ()
    cache_levels: tuple[CacheLevelSample, ...] = ()
    pending: int = 0
