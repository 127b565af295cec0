"""The Gateway: the one object the HTTP layer calls.

A request's path: resolve the model name (or alias) -> take an admission slot (else 429) ->
choose a routable deployment -> call its engine under one deadline. Streams hold their slot
until they end or the client goes away. A model serves either text (chat, completions) or images;
asking it for the other is a 400 naming ``model``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from blaze_ai.config.schema import DeploymentConfig, Settings
from blaze_ai.engines.base import AnyEngine, DiffusionEngine, LLMEngine
from blaze_ai.errors import BlazeError, InvalidRequestError, ModelNotFoundError
from blaze_ai.gateway.admission import Admission
from blaze_ai.gateway.models import Deployment, ModelGroup
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ImageRequest, ImageResult, StreamItem, TextRequest, TextResult

logger = logging.getLogger(__name__)

EngineFactory = Callable[[str, DeploymentConfig], AnyEngine]
"""Builds the engine of one deployment from its name and config."""


class Gateway:
    """Routes requests for served models to their engines.

    Args:
        groups: the served models.
        admission: the bound on requests held at once.
        request_timeout_s: overall deadline of one request, in seconds.
        clock: monotonic time source for deadlines.
    """

    def __init__(
        self,
        groups: Sequence[ModelGroup],
        *,
        admission: Admission,
        request_timeout_s: float,
        clock: Clock | None = None,
    ) -> None:
        self._groups = tuple(groups)
        self._by_name = {name: g for g in self._groups for name in (g.name, *g.aliases)}
        self._admission = admission
        self._timeout_s = request_timeout_s
        self._clock = clock or MonotonicClock()

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
        return cls(groups, admission=admission, request_timeout_s=settings.server.request_timeout_s)

    @property
    def models(self) -> tuple[ModelGroup, ...]:
        """The served models, in configuration order."""
        return self._groups

    @property
    def ready(self) -> bool:
        """True while every served model has at least one routable deployment."""
        return all(group.ready for group in self._groups)

    async def start(self) -> None:
        """Start every engine concurrently; one that fails is logged and left FAILED."""
        await asyncio.gather(*(self._start(d) for g in self._groups for d in g.deployments))

    async def stop(self) -> None:
        """Stop every engine; in-flight requests end with an error."""
        await asyncio.gather(*(d.engine.stop() for g in self._groups for d in g.deployments))

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
        group = self._resolve_for(req.model, _text_engine)
        with self._admission.slot():
            engine = _text_engine(group.choose().engine, req.model)
            return await engine.generate(req, self._deadline())

    async def stream(self, req: TextRequest) -> AsyncIterator[StreamItem]:
        """Stream the answer to ``req``: text chunks, then the usage.

        Errors are raised from the first ``__anext__`` when nothing was produced yet, so the
        HTTP layer can still answer with a status code.
        """
        group = self._resolve_for(req.model, _text_engine)
        with self._admission.slot():
            engine = _text_engine(group.choose().engine, req.model)
            async for item in engine.stream(req, self._deadline()):
                yield item

    async def generate_images(self, req: ImageRequest) -> ImageResult:
        """Generate the images of ``req``. Raises a :class:`~blaze_ai.errors.BlazeError`."""
        group = self._resolve_for(req.model, _image_engine)
        with self._admission.slot():
            engine = _image_engine(group.choose().engine, req.model)
            return await engine.generate_images(req, self._deadline())

    def _resolve_for(self, model: str, check: Callable[[AnyEngine, str], object]) -> ModelGroup:
        """The served model ``model``, its engines passed through ``check`` (raises 400)."""
        group = self.resolve(model)
        for deployment in group.deployments:
            check(deployment.engine, model)
        return group

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


def _text_engine(engine: AnyEngine, model: str) -> LLMEngine:
    """``engine`` as a text engine, or a 400 saying the model generates images."""
    if isinstance(engine, LLMEngine):
        return engine
    raise InvalidRequestError(
        f"The model '{model}' generates images; use /v1/images/generations", param="model"
    )


def _image_engine(engine: AnyEngine, model: str) -> DiffusionEngine:
    """``engine`` as an image engine, or a 400 saying the model generates text."""
    if isinstance(engine, DiffusionEngine):
        return engine
    raise InvalidRequestError(
        f"The model '{model}' generates text, not images; use /v1/chat/completions",
        param="model",
    )
