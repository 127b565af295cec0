"""The Gateway: the one object the HTTP layer calls, and the path of every request.

Each request reads top to bottom as named steps:

1. **resolve** the model name (or alias); a model serves text or images, and asking it for the
   other is a 400 naming ``model``;
2. **admit**: the key's limits, then an admission slot (else 429) held for as long as the
   answer or stream lasts;
3. **cache lookup** (:class:`~.response_cache.ResponseCache`): a hit is answered at once and
   never reaches the router, so cached answers are served even while no deployment can;
4. **route** (:class:`~.router.Router`): choose a healthy deployment whose breaker admits,
   call its engine under one deadline, retry on another, fall back to other models;
5. **cache store**: a complete answer is stored when the plan allows; a stream is recorded
   while it is relayed, and stored once it completed.

Active health checks and the engine supervisor run in the background between ``start()`` and
``stop()``. Assembly from the settings is in ``build.py``; the admin snapshot in ``status.py``.

A traced request (``ctx.record.trace``) gets a child span for its admission and its cache
lookup here, and one per routing attempt in the router (see
:mod:`blaze_ai.observability.tracing`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import replace

from blaze_ai.cache.policy import CachePlan
from blaze_ai.config.schema import DeploymentConfig, HealthCheckConfig
from blaze_ai.engines.base import AnyEngine, DiffusionEngine
from blaze_ai.errors import (
    BlazeError,
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
)
from blaze_ai.gateway.admission import Admission, Slot
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.health import HealthChecker
from blaze_ai.gateway.model_group import ModelGroup, RoutingContext
from blaze_ai.gateway.response_cache import ResponseCache
from blaze_ai.gateway.router import Router, Sleep
from blaze_ai.gateway.status import DeploymentStatus, deployment_status, gateway_sample
from blaze_ai.gateway.supervisor import Supervisor
from blaze_ai.observability.request import NoteErrors, RequestRecord
from blaze_ai.observability.samples import GatewaySample
from blaze_ai.observability.spans import ADMISSION, CACHE_LOOKUP, CACHE_STATUS, span
from blaze_ai.resilience.clock import Clock, MonotonicClock
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.streams import aclose
from blaze_ai.tenancy.limits import RateLimiter
from blaze_ai.tenancy.meter import Meter, estimated_prompt_tokens, reserved_tokens
from blaze_ai.types import (
    CacheInfo,
    CacheStatus,
    GatewayStreamItem,
    ImageRequest,
    ImageResult,
    StreamItem,
    TextRequest,
    TextResult,
    Usage,
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
        limiter: the per-key and per-team limits (None: no limits, as without auth).
        reserve_max_tokens: completion tokens reserved for a request without ``max_tokens``
            (``limits.default_max_tokens``).
    """

    def __init__(
        self,
        groups: Sequence[ModelGroup],
        *,
        admission: Admission,
        request_timeout_s: float,
        clock: Clock | None = None,
        health_targets: Sequence[tuple[Deployment, HealthCheckConfig]] = (),
        cache: ResponseCache | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        limiter: RateLimiter | None = None,
        reserve_max_tokens: int = 1024,
    ) -> None:
        self._groups = tuple(groups)
        self._limiter = limiter
        self._reserve = reserve_max_tokens
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
            g.name
            for g in self._groups
            if any(isinstance(d.engine, DiffusionEngine) for d in g.deployments)
        )

    @property
    def models(self) -> tuple[ModelGroup, ...]:
        """The served models, in configuration order."""
        return self._groups

    def serves_images(self, group: ModelGroup) -> bool:
        """Whether ``group`` generates images (its deployments are diffusion engines)."""
        return group.name in self._image_models

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

    def canonical_name(self, model: str) -> str:
        """The canonical name of the served model called ``model`` (name or alias); "" when
        no served model has that name."""
        group = self._by_name.get(model)
        return group.name if group is not None else ""

    async def generate(self, req: TextRequest, ctx: RoutingContext | None = None) -> TextResult:
        """Answer ``req`` in full; ``cache_status`` tells where it came from (None without a
        cache). Raises a :class:`~blaze_ai.errors.BlazeError` (also noted on ``ctx.record``)."""
        ctx = ctx or _NO_CONTEXT
        record = ctx.record
        with NoteErrors(record):
            group = self._resolve_kind(req, ctx, images=False)
            meter, slot = await self._admit(group, ctx, req)
            with slot:
                key = group.session_key(ctx, req.user)
                cache = self._cache
                plan = cache.plan(group.name, req) if cache is not None else None
                if cache is not None and (hit := await _lookup(cache, plan, record)) is not None:
                    _note_hit(hit, ctx)
                    return hit
                result = await self._router.generate(group, key, self._deadline(), req, ctx)
                if meter is not None:
                    meter.add_answer(result.usage)
                if record is not None:
                    record.add_result(result)
                if cache is None:
                    return result
                await cache.store(plan, result)
                return replace(result, cache_status=cache.count_miss(plan))

    async def stream(
        self, req: TextRequest, ctx: RoutingContext | None = None
    ) -> AsyncIterator[GatewayStreamItem]:
        """Stream the answer to ``req``: a :class:`~blaze_ai.types.CacheInfo` first when the
        gateway has a cache, then text chunks, then the usage.

        Errors are raised from the first ``__anext__`` that would yield text when nothing was
        produced yet, so the HTTP layer can still answer with a status code; each is also
        noted on ``ctx.record``, as is every item.
        """
        ctx = ctx or _NO_CONTEXT
        record = ctx.record
        with NoteErrors(record):
            group = self._resolve_kind(req, ctx, images=False)
            meter, slot = await self._admit(group, ctx, req)
            with slot:
                key = group.session_key(ctx, req.user)
                cache = self._cache
                plan = cache.plan(group.name, req) if cache is not None else None
                if cache is not None and (hit := await _lookup(cache, plan, record)) is not None:
                    assert hit.cache_status is not None
                    _note_hit(hit, ctx)
                    yield CacheInfo(hit.cache_status)
                    for cached in ResponseCache.replay(hit):
                        yield cached
                    return
                recording = None
                if cache is not None:
                    yield CacheInfo(cache.count_miss(plan))
                    recording = cache.recording(plan, req.params.n)
                items = self._router.stream(group, key, self._deadline(), req, ctx)
                if record is not None:
                    record.stream_started()
                if meter is not None:
                    items = _metered(items, meter, req)
                async with aclosing(items):
                    async for item in items:
                        if recording is not None:
                            recording.add(item)
                        if record is not None:
                            record.saw(item)
                        yield item
                if cache is not None and recording is not None:
                    await cache.store(plan, recording.result())

    async def generate_images(
        self, req: ImageRequest, ctx: RoutingContext | None = None
    ) -> ImageResult:
        """Generate the images of ``req``. Raises a :class:`~blaze_ai.errors.BlazeError` (also
        noted on ``ctx.record``)."""
        ctx = ctx or _NO_CONTEXT
        record = ctx.record
        with NoteErrors(record):
            group = self._resolve_kind(req, ctx, images=True)
            meter, slot = await self._admit(group, ctx, req)
            with slot:
                key = group.session_key(ctx, req.user)
                deadline = self._deadline()
                result = await self._router.generate_images(group, key, deadline, req, ctx)
        if meter is not None:
            meter.images += len(result.images)
        if record is not None:
            record.images += len(result.images)
        return result

    async def _admit(
        self, group: ModelGroup, ctx: RoutingContext, req: TextRequest | ImageRequest
    ) -> tuple[Meter | None, Slot]:
        """The request's meter (None without auth) and its admission slot, taken in an
        ``admission`` span: to hold as ``with slot:`` at once.

        Raises:
            PermissionDeniedError: the key may not use ``group`` (403 naming ``model``).
            RateLimitError: the key or its team is over a limit (429, ``Retry-After``).
            BackPressureError: every admission slot is taken (429).
        """
        with span(ctx.record, ADMISSION):
            meter = await self._admit_key(group, ctx, req)
            return meter, self._admission.take(group.counters)

    async def _admit_key(
        self, group: ModelGroup, ctx: RoutingContext, req: TextRequest | ImageRequest
    ) -> Meter | None:
        """The request's meter, admitted under its principal's limits (None without auth).

        Raises:
            PermissionDeniedError: the key may not use ``group`` (403 naming ``model``).
            RateLimitError: the key or its team is over a limit (429, ``Retry-After``).
        """
        meter = ctx.meter
        if meter is None:
            return None
        principal = meter.principal
        if not principal.may_use(group.name, *group.aliases):
            raise PermissionDeniedError(
                f"this API key may not use the model '{group.name}'", param="model"
            )
        meter.model = group.name
        limiter = self._limiter
        if limiter is not None:  # once per HTTP request (a list of prompts is one)
            tokens = 0 if isinstance(req, ImageRequest) else reserved_tokens(req, self._reserve)
            await meter.admitted(
                lambda: limiter.admit(principal, tokens=tokens, request_id=req.request_id)
            )
        return meter

    def deployment_status(self) -> list[DeploymentStatus]:
        """A snapshot of every deployment, for ``/admin/deployments``."""
        return deployment_status(self._groups)

    async def sample(self) -> GatewaySample:
        """What the scrape-time metrics read now (the cache levels' figures are awaited)."""
        levels = (await self._cache.stats()).levels if self._cache is not None else []
        return gateway_sample(self._groups, self._admission.pending, levels)

    def _resolve_kind(
        self, req: TextRequest | ImageRequest, ctx: RoutingContext, *, images: bool
    ) -> ModelGroup:
        """The served model ``req.model`` (noted on ``ctx.record``, the request's parameters
        on its trace); a 400 naming ``model`` when it serves the other kind."""
        model = req.model
        group = self.resolve(model)
        record = ctx.record
        if record is not None:
            record.model = group.name
            if record.trace is not None:
                record.trace.note_request(req)
        if self.serves_images(group) == images:
            return group
        if images:
            message = f"The model '{model}' generates text, not images; use /v1/chat/completions"
        else:
            message = f"The model '{model}' generates images; use /v1/images/generations"
        raise InvalidRequestError(message, param="model")

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


def _note_hit(hit: TextResult, ctx: RoutingContext) -> None:
    """Count a cache hit on the request's meter and record."""
    if ctx.meter is not None:
        ctx.meter.add_cache_hit(hit.usage)
    if ctx.record is not None:
        ctx.record.cache_hit = True
        ctx.record.add_result(hit)


async def _lookup(
    cache: ResponseCache, plan: CachePlan | None, record: RequestRecord | None
) -> TextResult | None:
    """The answer ``cache`` holds for ``plan`` (None on a miss, or when the plan does not
    look up), looked up in a ``cache lookup`` span."""
    if plan is None or not plan.lookup:
        return None
    with span(record, CACHE_LOOKUP) as lookup:
        hit = await cache.lookup(plan)
        status = hit.cache_status if hit is not None else None
        lookup.set(CACHE_STATUS, str(status or CacheStatus.MISS))
    return hit


async def _metered(
    items: AsyncGenerator[StreamItem, None], meter: Meter, req: TextRequest
) -> AsyncGenerator[StreamItem, None]:
    """``items``, counted on ``meter``: the usage when the stream ends with one, else (the
    client left) the prompt's estimate and one token per chunk streamed. Closing it closes
    ``items``."""
    streamed = 0
    finished = False
    try:
        async for item in items:
            if isinstance(item, Usage):
                meter.add_answer(item)
                finished = True
            else:
                streamed += 1
            yield item
    except Exception:
        finished = streamed == 0  # failed before any content: nothing was made to charge
        raise
    finally:
        await aclose(items)
        if not finished:
            meter.add_partial(estimated_prompt_tokens(req), streamed)
