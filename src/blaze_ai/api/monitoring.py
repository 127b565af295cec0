"""What the app observes: the metrics of model requests, their history for the dashboard, and
their traces.

:class:`Monitoring` is built once per app from ``settings.metrics`` and ``settings.tracing``;
the request-context middleware opens a
:class:`~blaze_ai.observability.request.RequestRecord` for each request to one of
:data:`MODEL_ENDPOINTS` (and starts its trace), the gateway fills it in, and
:meth:`Monitoring.finish` observes it (and ends its trace) when the response has ended.

Blaze's tracing module, and with it OpenTelemetry's SDK, is imported only when tracing is on
(:func:`build_tracing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from blaze_ai.config.observability import TracingConfig
from blaze_ai.config.schema import Settings
from blaze_ai.errors import ConfigError
from blaze_ai.gateway import Gateway
from blaze_ai.observability.history import MetricsHistory
from blaze_ai.observability.metrics import Metrics
from blaze_ai.observability.request import CLIENT_CLOSED_REQUEST
from blaze_ai.tenancy.service import is_loopback

if TYPE_CHECKING:
    from blaze_ai.observability.tracing import Tracing

MODEL_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/images/generations",
        "/v1/embeddings",
    }
)
"""The paths whose requests are counted in ``blaze_requests_total`` (the ``endpoint`` label), and
traced."""


def build_tracing(config: TracingConfig) -> Tracing | None:
    """The app's tracing when ``config.otlp_endpoint`` is set, else None (and neither
    :mod:`blaze_ai.observability.tracing` nor OpenTelemetry's SDK is imported).

    Raises:
        ConfigError: tracing is on but OpenTelemetry is not installed.
    """
    if config.otlp_endpoint is None:
        return None
    try:
        from blaze_ai.observability.tracing import Tracing
    except ImportError as exc:
        raise ConfigError(
            f"tracing.otlp_endpoint is set but OpenTelemetry cannot be imported ({exc}): "
            "pip install 'blaze-ai[tracing]'"
        ) from exc
    return Tracing(config)


class Monitoring:
    """The metrics, the dashboard's history and the traces of one app.

    Args:
        settings: ``settings.metrics`` and ``settings.tracing`` say what is on.
        gateway: what is observed (its deployments' latency observers are attached here).
        tracing: the app's tracing; default: built from ``settings.tracing`` (None when it
            names no endpoint). Tests pass one whose spans go to an in-memory exporter.
    """

    def __init__(
        self, settings: Settings, gateway: Gateway, *, tracing: Tracing | None = None
    ) -> None:
        config = settings.metrics
        self._gateway = gateway
        self.metrics_public = config.public or is_loopback(settings.server.host)
        self.tracing = tracing if tracing is not None else build_tracing(settings.tracing)
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
        observed = self.metrics is not None or self.tracing is not None
        return MODEL_ENDPOINTS if observed else frozenset()

    async def start(self) -> None:
        """Start the history's sampling."""
        if self.history is not None:
            await self.history.start()

    async def stop(self) -> None:
        """Stop the history's sampling; export the spans still queued."""
        if self.history is not None:
            await self.history.stop()
        if self.tracing is not None:
            await self.tracing.shutdown()

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
        """Observe the request of ``scope`` (when it has a record) once its response ended,
        and end its trace."""
        state: dict[str, Any] = scope.get("state", {})
        record = state.get("record")
        if record is None:
            return
        fields = state.get("log", {})
        if fields.get("client_disconnected"):
            status = CLIENT_CLOSED_REQUEST
        asked = fields.get("model")
        asked = asked if isinstance(asked, str) else None
        if not record.model and asked is not None:
            record.model = self._gateway.canonical_name(asked)
        meter = state.get("meter")
        if meter is not None:
            record.team = meter.principal.team
        if self.metrics is not None:
            self.metrics.observe_request(record, status, latency_s)
        if record.trace is not None:
            record.trace.end(record, status, asked)
