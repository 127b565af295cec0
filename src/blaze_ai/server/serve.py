"""How Blaze serves its ASGI app over HTTP: the one uvicorn configuration.

``blaze serve`` calls :func:`serve`; the test and benchmark servers of ``blaze_ai.devtools``
run that same command (in a subprocess, or forked from a pre-imported parent), so they serve
through this configuration too. The HTTP limits (``server:`` in the config) are enforced by
:class:`~blaze_ai.server.protocol.LimitedHttpProtocol`; uvicorn's own ``limit_concurrency``
stays off, since that protocol caps connections itself and answers with ``Retry-After``.
"""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp

from blaze_ai.config.schema import ServerConfig
from blaze_ai.server.protocol import LimitedHttpProtocol

GRACEFUL_SHUTDOWN_S = 10
"""Seconds a stopping server waits for requests in progress before it cancels them."""
STARTUP_FAILURE_EXIT_CODE = 3
"""Exit status when the server could not start (uvicorn's own code for it)."""


def uvicorn_config(app: ASGIApp, server: ServerConfig) -> uvicorn.Config:
    """The uvicorn configuration serving ``app`` as ``server`` says: address, HTTP limits.

    uvicorn's access log is off (Blaze's middleware writes one line per request) and so is its
    logging set-up (the CLI's applies); ``X-Forwarded-*`` headers are not trusted; WebSocket
    upgrades are not served (Blaze has no WebSocket route, and they would bypass the limits).
    """
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        http=LimitedHttpProtocol.with_limits(server),
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted unless a proxy is configured
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def serve(app: ASGIApp, server: ServerConfig) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then shut down gracefully (``GRACEFUL_SHUTDOWN_S``).

    Raises:
        SystemExit: with ``STARTUP_FAILURE_EXIT_CODE`` when the server did not start (the port
            is taken, or the app's start-up failed).
    """
    instance = uvicorn.Server(uvicorn_config(app, server))
    instance.run()
    if not instance.started:
        raise SystemExit(STARTUP_FAILURE_EXIT_CODE)
