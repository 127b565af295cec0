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
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from typing import cast

from blaze_ai.config.schema import DeploymentConfig
from blaze_ai.engines.base import AnyEngine, DiffusionEngine, LLMEngine
from blaze_ai.errors import BlazeError, InvalidRequestError, ModelNotFoundError
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.health import HealthChecker, HealthPolicy
from blaze_ai.gateway.model_group import ModelGroup, RoutingContext
from blaze_ai.gateway.response_cache import ResponseCache
from blaze_ai.gateway.router import Router, Sleep
from blaze_ai.gateway.status import DeploymentStatus, deployment_status
from blaze_ai.gateway.supervisor import Supervisor
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.deadline import Deadline
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


class Gateway:
    """Routes requests for served models to their engines.

    Args:
        groups: the served models.
        admission: the bound on requests held at once.
        request_timeout_s: overall deadline of one request, in seconds.
        clock: monotonic time source for deadlines, breakers and back-off.
        health_targets: deployments to probe actively, with their policies.
        cache: the response cache step; None: no caching.
        sleep: awaitable sleep of the router's back-off, the health checks and the supervisor.
        rng: randomness of the back-off jitter.
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
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._groups = tuple(groups)
        self._by_name = {name: g for g in self._groups for name in (g.name, *g.aliases)}
        self._admission = admission
        self._timeout_s = request_timeout_s
        self._clock = clock or MonotonicClock()
        self._router = Router(self.resolve, sleep=sleep, rng=rng)
        deployments = [d for g in self._groups for d in g.deployments]
        self._health = HealthChecker(health_targets, sleep=sleep)
        self._supervisor = Supervisor(deployments, clock=self._clock, sleep=sleep)
        self._cache = cache
        self._image_models = frozenset(
            g.name for g in self._groups if any(_is_image(d.engine) for d in g.deployments)
        )

    @property
    def models(self) -> tuple[ModelGroup, ...]:
        """The served models, in configuration order."""
        return self._groups

    @property
    def admission(self) -> Admission:
        """The bound on requests held at once (``pending`` is how many are held now)."""
        return self._admission

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
        return deployment_status(self._groups)

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
