"""Build the FastAPI application around a Gateway."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import Scope

from blaze_ai import __version__
from blaze_ai.api.auth import ADMIN_PREFIX, AuthMiddleware, is_public
from blaze_ai.api.errors import install_error_handlers
from blaze_ai.api.image_store import ImageStore
from blaze_ai.api.middleware import RequestContextMiddleware
from blaze_ai.api.monitoring import Monitoring
from blaze_ai.api.openapi import DocumentedApp
from blaze_ai.api.routes import admin, images, keys, openai, ops
from blaze_ai.api.routes import monitoring as monitoring_routes
from blaze_ai.api.routes.monitoring import DashboardAssets
from blaze_ai.api.schemas.chat import ChatCompletionRequest
from blaze_ai.api.schemas.completions import CompletionRequestBody
from blaze_ai.api.schemas.images import ImageGenerationRequest
from blaze_ai.api.schemas.ops import CacheClearBody
from blaze_ai.config.schema import ModelConfig, Settings
from blaze_ai.gateway import Gateway
from blaze_ai.resilience.tasks import cancel_and_wait
from blaze_ai.tenancy.service import Tenancy

if TYPE_CHECKING:
    from blaze_ai.observability.tracing import Tracing

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    gateway: Gateway,
    *,
    tenancy: Tenancy | None = None,
    started_at: float | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """The ASGI app: OpenAI routes, health routes, error handlers and middleware.

    With ``tenancy`` (auth on: :func:`~blaze_ai.tenancy.service.build_tenancy`), every route
    but ``/health`` and ``/ready`` needs an API key, ``/admin/*`` the admin key; the gateway
    should then have been built with ``tenancy.limiter``. Without it, no route needs a key.

    Engines start in the background once the app starts, so ``/health`` answers at once and
    ``/ready`` turns 200 when every model can serve; then one ``server_ready`` line is logged
    with ``ready_s``, the seconds since ``started_at`` (a :func:`time.perf_counter` reading
    taken when the process started; default: when the app starts).

    Model requests are traced when ``settings.tracing.otlp_endpoint`` is set, or through
    ``tracing`` when given (its spans are flushed when the app stops).
    """

    monitoring = Monitoring(settings, gateway, tracing=tracing)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        origin = started_at if started_at is not None else time.perf_counter()
        if tenancy is not None:
            await tenancy.start()
        task = asyncio.create_task(_start_engines(gateway, settings, origin))
        await monitoring.start()
        try:
            yield
        finally:
            await monitoring.stop()
            await cancel_and_wait(task)
            await gateway.stop()
            if tenancy is not None:
                await tenancy.stop()

    app = DocumentedApp(
        title="Blaze AI",
        version=__version__,
        lifespan=lifespan,
        schemas=(*openai.DOCUMENTED_SCHEMAS, *images.DOCUMENTED_SCHEMAS),
        examples=_served_model_examples(settings),
        public_paths=is_public if tenancy is not None else None,
    )
    app.state.gateway = gateway
    app.state.tenancy = tenancy
    app.state.monitoring = monitoring
    app.state.image_store = ImageStore(
        max_bytes=settings.server.image_store_max_bytes, ttl_s=settings.server.image_url_ttl_s
    )
    install_error_handlers(app)
    _add_routes(app, monitoring)
    _add_middleware(app, settings, tenancy, monitoring)
    return app


def _add_routes(app: FastAPI, monitoring: Monitoring) -> None:
    """The OpenAI routes (the hot ones first), images, ops, admin, keys; and, with metrics on,
    ``/metrics``, the dashboard and its assets."""
    openai.install_hot_routes(app)
    app.include_router(openai.router)
    app.include_router(images.router)
    app.include_router(ops.router)
    app.include_router(admin.router)
    app.include_router(keys.router)
    if monitoring.metrics is not None:
        app.include_router(monitoring_routes.router)
        app.mount("/dashboard/assets", DashboardAssets(), "dashboard")


def _add_middleware(
    app: FastAPI, settings: Settings, tenancy: Tenancy | None, monitoring: Monitoring
) -> None:
    """Request context (outermost: ids, body limit, access line, accounting, metrics), then
    auth."""
    if tenancy is not None:
        public = frozenset({"/metrics"}) if monitoring.metrics_public else frozenset()
        app.add_middleware(AuthMiddleware, tenancy=tenancy, also_public=public)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.server.max_body_bytes,
        on_finish=functools.partial(_finish, tenancy, monitoring),
        recorded_paths=monitoring.recorded_paths,
        overhead_header=monitoring.metrics is not None,
        tracing=monitoring.tracing,
    )


async def _finish(
    tenancy: Tenancy | None, monitoring: Monitoring, scope: Scope, status: int, latency_s: float
) -> None:
    """A request has ended: observe it, then settle its limits and record its usage."""
    monitoring.finish(scope, status, latency_s)
    if tenancy is not None:
        await _account(tenancy, scope, status, latency_s)


async def _account(tenancy: Tenancy, scope: Scope, status: int, latency_s: float) -> None:
    """Settle the limits and record the usage of an authenticated request that has ended."""
    state = scope.get("state", {})
    meter = state.get("meter")
    if meter is None:
        return  # refused before (401 / 403), or a public path
    fields = state.get("log", {})
    if meter.model is None and isinstance(fields.get("model"), str):
        meter.model = fields["model"]  # refused before the gateway resolved it (a 400, a 404)
    tenancy.finish(
        meter,
        request_id=state.get("request_id", ""),
        status=499 if fields.get("client_disconnected") else status,
        latency_s=latency_s,
        error_type=fields.get("error_type"),
        record=not scope.get("path", "").startswith(ADMIN_PREFIX),  # usage is model traffic
    )


def _served_model_examples(settings: Settings) -> dict[str, dict[str, list[str]]]:
    """The served models, as ``examples`` of the ``model`` field of each request body."""
    images = [m.name for m in settings.models if _serves_images(m)]
    text = [m.name for m in settings.models if not _serves_images(m)]
    return {
        ChatCompletionRequest.__name__: {"model": text},
        CompletionRequestBody.__name__: {"model": text},
        ImageGenerationRequest.__name__: {"model": images},
        CacheClearBody.__name__: {"model": [m.name for m in settings.models]},
    }


def _serves_images(model: ModelConfig) -> bool:
    return any(d.engine == "diffusion" for d in model.deployments)


async def _start_engines(gateway: Gateway, settings: Settings, origin: float) -> None:
    await gateway.start()
    url = f"http://{settings.server.host}:{settings.server.port}"
    ready_s = round(time.perf_counter() - origin, 2)
    if gateway.ready:
        models = [g.name for g in gateway.models]
        logger.info("server_ready", extra={"url": url, "models": models, "ready_s": ready_s})
    else:
        logger.error("server_not_ready", extra={"url": url, "ready_s": ready_s})
