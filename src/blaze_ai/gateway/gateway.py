"""The Gateway: the one object the HTTP layer calls.

A request's path: resolve the model name (or alias) -> take an admission slot (else 429) ->
choose a routable deployment -> call its engine under one deadline. Streams hold their slot
until they end or the client goes away.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing

from blaze_ai.config.schema import DeploymentConfig, Settings
from blaze_ai.engines.base import LLMEngine
from blaze_ai.errors import BlazeError, ModelNotFoundError
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.caching import ResponseCaching
from blaze_ai.gateway.models import Deployment, ModelGroup
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import GatewayStreamItem, StreamItem, TextRequest, TextResult

logger = logging.getLogger(__name__)

EngineFactory = Callable[[str, DeploymentConfig], LLMEngine]
"""Builds the engine of one deployment from its name and config."""


class Gateway:
    """Routes requests for served models to their engines.

    Args:
        groups: the served models.
        admission: the bound on requests held at once.
        request_timeout_s: overall deadline of one request, in seconds.
        clock: monotonic time source for deadlines.
        cache: the response cache step; None: no caching.
    """

    def __init__(
        self,
        groups: Sequence[ModelGroup],
        *,
        admission: Admission,
        request_timeout_s: float,
        clock: Clock | None = None,
        cache: ResponseCaching | None = None,
    ) -> None:
        self._groups = tuple(groups)
        self._by_name = {name: g for g in self._groups for name in (g.name, *g.aliases)}
        self._admission = admission
        self._timeout_s = request_timeout_s
        self._clock = clock or MonotonicClock()
        self._cache = cache

    @classmethod
    def from_settings(cls, settings: Settings, engine_factory: EngineFactory) -> Gateway:
        """Build the served models of ``settings``, one engine per deployment replica."""
        created = int(time.time())
        groups = []
        for model in settings.models:
            deployments: list[Deployment] = []
            for config in model.deployments:
                for _ in range(config.replicas):
                    name = f"{model.name}/{len(deployments)}"
                    deployments.append(Deployment(name, engine_factory(name, config)))
            groups.append(ModelGroup(model.name, tuple(model.aliases), tuple(deployments), created))
        admission = Admission(settings.server.max_pending_requests)
        return cls(
            groups,
            admission=admission,
            request_timeout_s=settings.server.request_timeout_s,
            cache=ResponseCaching.from_settings(settings),
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
    def cache(self) -> ResponseCaching | None:
        """The response cache step, for the admin endpoints (None when caching is off)."""
        return self._cache

    async def start(self) -> None:
        """Start the cache, then every engine concurrently; an engine that fails is logged
        and left FAILED."""
        if self._cache is not None:
            await self._cache.start()
        await asyncio.gather(*(self._start(d) for g in self._groups for d in g.deployments))

    async def stop(self) -> None:
        """Stop every engine; in-flight requests end with an error."""
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

    async def generate(self, req: TextRequest) -> TextResult:
        """Answer ``req`` in full. Raises a :class:`~blaze_ai.errors.BlazeError`."""
        group = self.resolve(req.model)
        with self._admission.slot():
            # --- cache step (gateway/caching.py): a hit never reaches the router ---
            if self._cache is not None:
                return await self._cache.generate(
                    group.name, req, lambda: self._routed_generate(group, req)
                )
            return await self._routed_generate(group, req)

    async def stream(self, req: TextRequest) -> AsyncIterator[GatewayStreamItem]:
        """Stream the answer to ``req``: a :class:`~blaze_ai.types.CacheInfo` first when the
        gateway has a cache, then text chunks, then the usage.

        Errors are raised from the first ``__anext__`` that would yield text when nothing was
        produced yet, so the HTTP layer can still answer with a status code.
        """
        group = self.resolve(req.model)
        with self._admission.slot():
            # --- cache step (gateway/caching.py): a hit never reaches the router ---
            items: AsyncGenerator[GatewayStreamItem, None]
            if self._cache is not None:
                items = self._cache.stream(group.name, req, lambda: self._routed_stream(group, req))
            else:
                items = self._routed_stream(group, req)
            async with aclosing(items):
                async for item in items:
                    yield item

    async def _routed_generate(self, group: ModelGroup, req: TextRequest) -> TextResult:
        deployment = group.choose()
        return await deployment.engine.generate(req, self._deadline())

    async def _routed_stream(
        self, group: ModelGroup, req: TextRequest
    ) -> AsyncGenerator[StreamItem, None]:
        deployment = group.choose()
        async for item in deployment.engine.stream(req, self._deadline()):
            yield item

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
