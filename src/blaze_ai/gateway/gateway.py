"""The Gateway: the one object the HTTP layer calls.

A request's path: resolve the model name (or alias) -> take an admission slot (else 429) ->
the cache step answers a hit (see ``caching.py``) -> on a miss the router chooses a deployment
(healthy, breaker admitting, by the model's strategy) and calls its engine under one deadline,
retrying on another deployment and falling back to other models (see ``router.py``). Active
health checks and the engine supervisor run in the background between ``start()`` and
``stop()``. A model serves either text (chat, completions) or images; asking it for the other
is a 400 naming ``model``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import cast

from blaze_ai.config.schema import DeploymentConfig, ModelConfig, Settings
from blaze_ai.engines.base import AnyEngine, DiffusionEngine, LLMEngine
from blaze_ai.errors import BlazeError, InvalidRequestError, ModelNotFoundError
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.balancers import BalancerOptions, make_balancer
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.health import HealthChecker, HealthPolicy
from blaze_ai.gateway.model_group import ModelGroup, RetryPolicy, RoutingContext
from blaze_ai.gateway.response_cache import ResponseCache
from blaze_ai.gateway.router import Router
from blaze_ai.gateway.supervisor import Supervisor
from blaze_ai.resilience.breaker import BreakerPolicy, CircuitBreaker
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.resilience.retry import Backoff
from blaze_ai.types import (
    GatewayStreamItem,
    ImageRequest,
    ImageResult,
    StreamItem,
    TextRequest,
    TextResult,
)

logger = logging.getLogger(__name__)

EngineFactory = Callable[[str, DeploymentConfig], AnyEngine]
"""Builds the engine of one deployment from its name and config."""

_NO_CONTEXT = RoutingContext()


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """What ``/admin/deployments`` shows of one deployment (latency in milliseconds)."""

    model: str
    name: str
    engine_state: str
    healthy: bool
    breaker_state: str
    in_flight: int
    queue_depth: int
    batch_size: int
    cancelled_total: int
    cached_prompt_tokens_total: int
    ewma_latency_ms: float | None
    error_rate: float
    requests: int
    failures: int
    last_error: str | None
    restarts: int
    weight: float


class Gateway:
    """Routes requests for served models to their engines.

    Args:
        groups: the served models.
        admission: the bound on requests held at once.
        request_timeout_s: overall deadline of one request, in seconds.
        clock: monotonic time source for deadlines, breakers and back-off.
        health_targets: deployments to probe actively, with their policies.
        cache: the response cache step; None: no caching.
    """

    def __init__(
        self,
        groups: Sequence[ModelGroup],
        *,
        admission: Admission,
        request_timeout_s: float,
        clock: Clock | None = None,
        health_targets: Sequence[tuple[Deployment, HealthPolicy]] = (),
        cache: ResponseCache | None = None,
    ) -> None:
        self._groups = tuple(groups)
        self._by_name = {name: g for g in self._groups for name in (g.name, *g.aliases)}
        self._admission = admission
        self._timeout_s = request_timeout_s
        self._clock = clock or MonotonicClock()
        self._router = Router(self.resolve)
        deployments = [d for g in self._groups for d in g.deployments]
        self._health = HealthChecker(health_targets)
        self._supervisor = Supervisor(deployments, clock=self._clock)
        self._cache = cache
        self._image_models = frozenset(
            g.name for g in self._groups if any(_is_image(d.engine) for d in g.deployments)
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, engine_factory: EngineFactory, *, clock: Clock | None = None
    ) -> Gateway:
        """Build the served models of ``settings``: engines, breakers, balancers, health checks."""
        clock = clock or MonotonicClock()
        created = int(time.time())
        groups, targets = [], []
        for model in settings.models:
            group = _build_group(model, engine_factory, clock, created)
            groups.append(group)
            if model.health_check.enabled:
                policy = HealthPolicy(
                    interval_s=model.health_check.interval_s,
                    timeout_s=model.health_check.timeout_s,
                    unhealthy_threshold=model.health_check.unhealthy_threshold,
                    healthy_threshold=model.health_check.healthy_threshold,
                )
                targets += [(d, policy) for d in group.deployments]
        return cls(
            groups,
            admission=Admission(settings.server.max_pending_requests),
            request_timeout_s=settings.server.request_timeout_s,
            clock=clock,
            health_targets=targets,
            cache=ResponseCache.from_settings(settings),
        )

    @property
    def models(self) -> tuple[ModelGroup, ...]:
        """The served models, in configuration order."""
        return self._groups

    @property
    def ready(self) -> bool:
        """True while every served model has at least one routable deployment."""
        return all(group.ready for group in self._groups)

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache step, for the admin endpoints (None when caching is off)."""
        return self._cache

    async def start(self) -> None:
        """Start the cache, every engine concurrently (a failure is logged, and left to the
        supervisor), then the health checks and the supervisor."""
        if self._cache is not None:
            await self._cache.start()
        await asyncio.gather(*(self._start(d) for g in self._groups for d in g.deployments))
        await self._health.start()
        await self._supervisor.start()

    async def stop(self) -> None:
        """Stop background work, then every engine; in-flight requests end with an error."""
        await self._supervisor.stop()
        await self._health.stop()
        await asyncio.gather(*(d.engine.stop() for g in self._groups for d in g.deployments))
        if self._cache is not None:
            await self._cache.stop()

    def resolve(self, model: str) -> ModelGroup:
        """The served model called ``model`` (name or alias).

        Raises:
            ModelNotFoundError: no served model has that name.
        """
        try:
            return self._by_name[model]
        except KeyError:
            raise ModelNotFoundError(f"The model '{model}' does not exist", param="model") from None

    async def generate(self, req: TextRequest, ctx: RoutingContext | None = None) -> TextResult:
        """Answer ``req`` in full. Raises a :class:`~blaze_ai.errors.BlazeError`."""
        group = self._resolve_kind(req.model, images=False)
        with self._admission.slot():
            key = group.session_key(ctx or _NO_CONTEXT, req.user)
            if self._cache is not None:  # a hit never reaches the router
                return await self._cache.generate(
                    group.name, req, lambda: self._routed_generate(group, req, key)
                )
            return await self._routed_generate(group, req, key)

    async def stream(
        self, req: TextRequest, ctx: RoutingContext | None = None
    ) -> AsyncIterator[GatewayStreamItem]:
        """Stream the answer to ``req``: a :class:`~blaze_ai.types.CacheInfo` first when the
        gateway has a cache, then text chunks, then the usage.

        Errors are raised from the first ``__anext__`` that would yield text when nothing was
        produced yet, so the HTTP layer can still answer with a status code.
        """
        group = self._resolve_kind(req.model, images=False)
        with self._admission.slot():
            key = group.session_key(ctx or _NO_CONTEXT, req.user)
            items: AsyncGenerator[GatewayStreamItem, None]
            if self._cache is not None:  # a hit never reaches the router
                items = self._cache.stream(
                    group.name, req, lambda: self._routed_stream(group, req, key)
                )
            else:
                items = self._routed_stream(group, req, key)
            async with aclosing(items):
                async for item in items:
                    yield item

    async def generate_images(
        self, req: ImageRequest, ctx: RoutingContext | None = None
    ) -> ImageResult:
        """Generate the images of ``req``. Raises a :class:`~blaze_ai.errors.BlazeError`."""
        group = self._resolve_kind(req.model, images=True)
        with self._admission.slot():
            key = group.session_key(ctx or _NO_CONTEXT, req.user)
            return await self._router.call(
                group,
                key,
                self._deadline(),
                lambda d, deadline: _image(d.engine).generate_images(req, deadline),
            )

    def _resolve_kind(self, model: str, *, images: bool) -> ModelGroup:
        """The served model ``model``; a 400 naming ``model`` when it serves the other kind."""
        group = self.resolve(model)
        if (group.name in self._image_models) == images:
            return group
        if images:
            message = f"The model '{model}' generates text, not images; use /v1/chat/completions"
        else:
            message = f"The model '{model}' generates images; use /v1/images/generations"
        raise InvalidRequestError(message, param="model")

    async def _routed_generate(
        self, group: ModelGroup, req: TextRequest, key: str | None
    ) -> TextResult:
        return await self._router.call(
            group,
            key,
            self._deadline(),
            lambda d, deadline: _text(d.engine).generate(req, deadline),
        )

    async def _routed_stream(
        self, group: ModelGroup, req: TextRequest, key: str | None
    ) -> AsyncGenerator[StreamItem, None]:
        items = self._router.stream(
            group, key, self._deadline(), lambda d, deadline: _text(d.engine).stream(req, deadline)
        )
        async for item in items:
            yield item

    def deployment_status(self) -> list[DeploymentStatus]:
        """A snapshot of every deployment, for ``/admin/deployments``."""
        out = []
        for group in self._groups:
            for d in group.deployments:
                load = d.engine.load()
                latency = d.stats.ewma_latency_s
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
                        cancelled_total=load.cancelled_total,
                        cached_prompt_tokens_total=load.cached_prompt_tokens_total,
                        ewma_latency_ms=None if latency is None else round(latency * 1000, 3),
                        error_rate=round(d.breaker.error_rate(), 4),
                        requests=d.stats.requests,
                        failures=d.stats.failures,
                        last_error=d.stats.last_error,
                        restarts=d.restarts,
                        weight=d.weight,
                    )
                )
        return out

    def _deadline(self) -> Deadline:
        return Deadline.after(self._timeout_s, self._clock)

    async def _start(self, deployment: Deployment) -> None:
        started = time.perf_counter()
        try:
            await deployment.engine.start()
        except BlazeError as exc:
            logger.error(
                "engine_start_failed", extra={"deployment": deployment.name, "error": exc.message}
            )
            return
        logger.info(
            "engine_ready",
            extra={
                "deployment": deployment.name,
                "start_s": round(time.perf_counter() - started, 2),
            },
        )


def _is_image(engine: AnyEngine) -> bool:
    return isinstance(engine, DiffusionEngine)


def _text(engine: AnyEngine) -> LLMEngine:
    return cast(LLMEngine, engine)  # the model's kind was checked by _resolve_kind


def _image(engine: AnyEngine) -> DiffusionEngine:
    return cast(DiffusionEngine, engine)


def _build_group(
    model: ModelConfig, engine_factory: EngineFactory, clock: Clock, created: int
) -> ModelGroup:
    policy = BreakerPolicy(**model.breaker.model_dump())
    deployments: list[Deployment] = []
    for config in model.deployments:
        for _ in range(getattr(config, "replicas", 1)):
            name = f"{model.name}/{len(deployments)}"
            deployments.append(
                Deployment(
                    name,
                    engine_factory(name, config),
                    weight=config.weight,
                    max_concurrency=config.max_concurrency,
                    timeout_s=config.timeout_s,
                    breaker=CircuitBreaker(policy, clock),
                    clock=clock,
                )
            )
    options = BalancerOptions(virtual_nodes=model.virtual_nodes, exploration=model.ewma_exploration)
    retry = RetryPolicy(
        num_retries=model.retry.num_retries,
        backoff=Backoff(model.retry.backoff_base_s, model.retry.backoff_max_s),
    )
    return ModelGroup(
        name=model.name,
        aliases=tuple(model.aliases),
        deployments=tuple(deployments),
        created=created,
        balancer=make_balancer(model.strategy, options),
        retry=retry,
        fallbacks=tuple(model.fallbacks),
        session_header=model.session_header.lower(),
    )
