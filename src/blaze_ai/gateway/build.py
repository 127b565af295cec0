"""The composition root: build a :class:`Gateway` from :class:`Settings`.

Each served model becomes a :class:`ModelGroup`: its deployments (one per replica, each with its
engine and circuit breaker), its balancer, retry policy and fallbacks. Time, sleep and randomness
are passed down to every component that uses them, so tests can drive the whole gateway on a
fake clock.
"""

from __future__ import annotations

import asyncio
import random
import time

from blaze_ai.config.schema import ModelConfig, Settings
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.balancers import make_balancer
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.gateway import EngineFactory, Gateway
from blaze_ai.gateway.model_group import ModelGroup
from blaze_ai.gateway.response_cache import ResponseCache
from blaze_ai.gateway.router import Sleep
from blaze_ai.resilience.breaker import CircuitBreaker
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.tenancy.limits import RateLimiter


def build_gateway(
    settings: Settings,
    engine_factory: EngineFactory,
    *,
    clock: Clock | None = None,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    limiter: RateLimiter | None = None,
) -> Gateway:
    """The gateway serving ``settings.models``: engines, breakers, balancers, health checks;
    with ``limiter`` (auth on), the per-key and per-team limits at admission.

    ``clock``, ``sleep`` and ``rng`` reach every component that keeps time, waits or draws
    (breakers, deadlines, back-off, health checks, the supervisor), for tests on a fake clock.
    """
    clock = clock or MonotonicClock()
    created = int(time.time())
    groups = [_build_group(model, engine_factory, clock, rng, created) for model in settings.models]
    targets = [
        (d, model.health_check)
        for model, group in zip(settings.models, groups, strict=True)
        if model.health_check.enabled
        for d in group.deployments
    ]
    return Gateway(
        groups,
        admission=Admission(settings.server.max_pending_requests),
        request_timeout_s=settings.server.request_timeout_s,
        clock=clock,
        health_targets=targets,
        cache=ResponseCache.from_settings(settings),
        sleep=sleep,
        rng=rng,
        limiter=limiter,
        reserve_max_tokens=settings.limits.default_max_tokens,
    )


def _build_group(
    model: ModelConfig,
    engine_factory: EngineFactory,
    clock: Clock,
    rng: random.Random | None,
    created: int,
) -> ModelGroup:
    """One served model: a deployment per replica of each deployment config, in order."""
    deployments: list[Deployment] = []
    for config in model.deployments:
        for _ in range(config.replicas):
            name = f"{model.name}/{len(deployments)}"
            deployments.append(
                Deployment(
                    name,
                    engine_factory(name, config),
                    weight=config.weight,
                    max_concurrency=config.max_concurrency,
                    timeout_s=config.timeout_s,
                    breaker=CircuitBreaker(model.breaker, clock),
                    clock=clock,
                    kind=config.engine,
                )
            )
    return ModelGroup(
        name=model.name,
        aliases=tuple(model.aliases),
        deployments=tuple(deployments),
        created=created,
        balancer=make_balancer(model, rng),
        retry=model.retry,
        fallbacks=tuple(model.fallbacks),
        session_header=model.session_header.lower(),
    )
