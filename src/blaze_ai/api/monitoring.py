"""What the app observes: the metrics of model requests, their history for the dashboard.

:class:`Monitoring` is built once per app from ``settings.metrics``; the request-context
middleware opens a :class:`~blaze_ai.observability.request.RequestRecord` for each request to
one of :data:`MODEL_ENDPOINTS`, the gateway fills it in, and :meth:`Monitoring.finish` observes
it when the response has ended.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from blaze_ai.config.schema import Settings
from blaze_ai.gateway import Gateway
from blaze_ai.observability.history import MetricsHistory
from blaze_ai.observability.metrics import CLIENT_CLOSED_REQUEST, Metrics
from blaze_ai.tenancy.service import is_loopback

MODEL_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/images/generations",
        "/v1/embeddings",
    }
)
"""The paths whose requests are counted in ``blaze_requests_total`` (the ``endpoint`` label)."""


class Monitoring:
    """The metrics and the dashboard's history of one app.

    Args:
        settings: ``settings.metrics`` says what is on.
        gateway: what is observed (its deployments' latency observers are attached here).
    """

    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        config = settings.metrics
        self._gateway = gateway
        self.metrics_public = config.public or is_loopback(settings.server.host)
        self.metrics: Metrics | None = None
        self.history: MetricsHistory | None = None
        if not config.enabled:
            return
        metrics = self.metrics = Metrics()
        for group in gateway.models:
            for deployment in group.deployments:
                deployment.observe_latency(metrics.deployment_latency(group.name, deployment.name))
        self.history = MetricsHistory(
            metrics,
            gateway.sample,
            interval_s=config.history_interval_s,
            window_s=config.history_window_s,
            latency_window_s=config.latency_window_s,
        )

    @property
    def recorded_paths(self) -> frozenset[str]:
        """The paths whose requests get a record (none when nothing observes them)."""
        return MODEL_ENDPOINTS if self.metrics is not None else frozenset()

    async def start(self) -> None:
        """Start the history's sampling."""
        if self.history is not None:
            await self.history.start()

    async def stop(self) -> None:
        """Stop the history's sampling."""
        if self.history is not None:
            await self.history.stop()

    async def exposition(self) -> bytes:
        """``/metrics``: every metric in the text format, from a gateway sample taken now.

        Raises:
            RuntimeError: metrics are off (the route is not served then).
        """
        if self.metrics is None:
            raise RuntimeError("metrics are off")
        self.metrics.update(await self._gateway.sample())
        return self.metrics.exposition()

    def finish(self, scope: Scope, status: int, latency_s: float) -> None:
        """Observe the request of ``scope`` (when it has a record) once its response ended."""
        state: dict[str, Any] = scope.get("state", {})
        record = state.get("record")
        if record is None or self.metrics is None:
            return
        fields = state.get("log", {})
        if fields.get("client_disconnected"):
            status = CLIENT_CLOSED_REQUEST
        if not record.model and isinstance(fields.get("model"), str):
            record.model = self._gateway.canonical_name(fields["model"])
        meter = state.get("meter")
        if meter is not None:
            record.team = meter.principal.team
        self.metrics.observe_request(record, status, latency_s)
