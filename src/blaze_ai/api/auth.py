"""Authentication of every request, as ASGI middleware: protected unless listed as public.

The check sits in front of the whole app, not on each route, so a route added later is
protected by default: only :data:`PUBLIC_PATHS` and :data:`PUBLIC_PREFIXES` answer without a
key. ``/admin/*`` and ``/metrics`` (when not public) also need the admin key (403 for any
other key). A request that passes gets its
:class:`~blaze_ai.tenancy.meter.Meter` in ``scope["state"]["meter"]``, which the routes hand to
the gateway (limits, usage) and which the response's ``x-ratelimit-*`` headers come from; its
key id and team go on the access line.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blaze_ai.api.errors import error_response, note_error
from blaze_ai.errors import BlazeError, PermissionDeniedError
from blaze_ai.tenancy.meter import Meter
from blaze_ai.tenancy.service import Tenancy

PUBLIC_PATHS = frozenset({"/health", "/ready", "/dashboard"})
"""Paths served without a key: the liveness and readiness probes, and the dashboard's page
(it holds no data: it asks ``/admin/dashboard`` for it with the admin key)."""

PUBLIC_PREFIXES = ("/v1/files/images/", "/dashboard/assets/")
"""Also served without a key: an image returned as a ``url``, whose 128-bit random id is its
secret (as OpenAI's image URLs are signed), so a browser or a plain HTTP GET can fetch it; the
dashboard's static script, style and chart library."""

ADMIN_PREFIX = "/admin"
ADMIN_PATHS = frozenset({"/metrics"})
"""Outside ``/admin``, also the admin key's (unless made public: ``also_public``)."""


def is_public(path: str) -> bool:
    """Whether ``path`` is served without a key."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class AuthMiddleware:
    """Authenticate each HTTP request whose path is not public (:func:`is_public`); refuse it
    in OpenAI's
    error shape (401, 403, 503) or pass it on with its meter.

    Args:
        app: the wrapped ASGI app.
        tenancy: who may call (keys, limits, usage).
        also_public: more paths served without a key (``/metrics`` on a loopback address,
            or with ``metrics.public``).
    """

    def __init__(
        self, app: ASGIApp, *, tenancy: Tenancy, also_public: frozenset[str] = frozenset()
    ) -> None:
        self.app = app
        self.tenancy = tenancy
        self.also_public = also_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if not path or is_public(path) or path in self.also_public:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        fields = state.setdefault("log", {})
        try:
            principal = await self.tenancy.authenticate(scope["headers"])
            if (path.startswith(ADMIN_PREFIX) or path in ADMIN_PATHS) and not principal.is_admin:
                raise PermissionDeniedError(f"{path} needs the admin key")
        except BlazeError as exc:
            note_error(scope, exc)
            await error_response(exc)(scope, receive, send)
            return
        fields["key_id"] = principal.key_id
        if principal.team:
            fields["team"] = principal.team
        meter = Meter(principal)
        state["meter"] = meter

        async def send_with_limits(message: Message) -> None:
            ticket = meter.ticket
            if message["type"] == "http.response.start" and ticket is not None and ticket.headers:
                extra = [(_name(k), v.encode()) for k, v in ticket.headers.items()]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_limits)


_NAMES: dict[str, bytes] = {}


def _name(header: str) -> bytes:
    """``header`` encoded once (the six ``x-ratelimit-*`` names recur on every response)."""
    encoded = _NAMES.get(header)
    if encoded is None:
        encoded = _NAMES[header] = header.encode()
    return encoded
