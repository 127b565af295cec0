"""What the routes read from the app, and the one cancellation decorator they share.

As vLLM's ``api_router.py`` does: one accessor per object kept on ``app.state`` (no route reads
``request.app.state`` itself), and ``@with_cancellation`` for the routes whose work is cancelled
when the client disconnects (see :mod:`blaze_ai.api.disconnect`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec

from fastapi import Request
from fastapi.responses import Response

from blaze_ai.api.disconnect import ClientDisconnectedError
from blaze_ai.api.image_store import ImageStore
from blaze_ai.api.monitoring import Monitoring
from blaze_ai.errors import InvalidRequestError
from blaze_ai.gateway import Gateway, RoutingContext
from blaze_ai.observability.request import CLIENT_CLOSED_REQUEST
from blaze_ai.tenancy.meter import Meter
from blaze_ai.tenancy.service import Tenancy

P = ParamSpec("P")


def gateway_of(request: Request) -> Gateway:
    """The :class:`Gateway` the app serves."""
    gateway: Gateway = request.app.state.gateway
    return gateway


def routing_of(request: Request) -> RoutingContext:
    """What the gateway reads of the request besides its body: headers and peer (session
    affinity), its meter (auth on) and its metrics record (metrics on)."""
    client = request.client
    state = request.scope.get("state", {})
    return RoutingContext(
        headers=request.headers,
        client_ip=client.host if client else None,
        meter=state.get("meter"),
        record=state.get("record"),
    )


def monitoring_of(request: Request) -> Monitoring:
    """The app's metrics and their history."""
    monitoring: Monitoring = request.app.state.monitoring
    return monitoring


def tenant_of(request: Request) -> str:
    """The request's tenant (its key's team; "" when auth is off or for the admin key)."""
    meter = meter_of(request)
    return meter.principal.team if meter is not None else ""


def meter_of(request: Request) -> Meter | None:
    """The request's account (principal, limits, usage); None when auth is off."""
    meter: Meter | None = request.scope.get("state", {}).get("meter")
    return meter


def tenancy_of(request: Request) -> Tenancy:
    """Keys, teams and usage of the app.

    Raises:
        InvalidRequestError: auth is off (there are no keys to manage).
    """
    tenancy: Tenancy | None = request.app.state.tenancy
    if tenancy is None:
        raise InvalidRequestError(
            "API keys are off: set BLAZE_ADMIN_KEY (or auth.enabled) to manage keys"
        )
    return tenancy


def image_store_of(request: Request) -> ImageStore:
    """The store behind image ``url`` responses."""
    store: ImageStore = request.app.state.image_store
    return store


def with_cancellation(
    handler: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """Answer 499 when the handler's work was cancelled because the client disconnected.

    The handler wraps its cancellable work in :func:`~blaze_ai.api.disconnect.cancel_on_disconnect`
    (after the body is read, so the disconnect watcher never takes body messages).
    """

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except ClientDisconnectedError:
            return Response(status_code=CLIENT_CLOSED_REQUEST)

    return wrapper
