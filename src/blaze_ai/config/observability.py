"""Observability settings: Prometheus metrics and the dashboard (``metrics``), OpenTelemetry
traces (``tracing``)."""

from __future__ import annotations

from pydantic import Field

from blaze_ai.config.base import StrictModel as _Strict


class MetricsConfig(_Strict):
    """Prometheus metrics at ``/metrics``, and the live dashboard at ``/dashboard``.

    Attributes:
        enabled: count requests and serve ``/metrics``, the dashboard and its history; off,
            none of them exists (and no ``X-Blaze-Overhead-Ms`` header is sent).
        public: serve ``/metrics`` without a key even when the server listens on a
            non-loopback address with auth on (on a loopback address it is always public).
        history_interval_s: seconds between two points of the dashboard's charts.
        history_window_s: seconds of history the charts keep (in memory).
        latency_window_s: seconds over which the dashboard's per-deployment p50/p99 latency
            is computed.
    """

    enabled: bool = True
    public: bool = False
    history_interval_s: float = Field(default=2.0, ge=0.5, le=60)
    history_window_s: float = Field(default=900.0, gt=0, le=86_400)
    latency_window_s: float = Field(default=60.0, gt=0, le=3600)


class TracingConfig(_Strict):
    """OpenTelemetry traces, off unless ``otlp_endpoint`` is set (OpenTelemetry itself is the
    ``tracing`` extra: ``pip install 'blaze-ai[tracing]'``).

    Attributes:
        otlp_endpoint: the OTLP/HTTP traces URL of a collector (Jaeger, Tempo, the
            OpenTelemetry Collector), e.g. ``http://127.0.0.1:4318/v1/traces``; None: no traces.
        service_name: the ``service.name`` resource attribute of the spans.
        sample_ratio: share of new traces sampled (0-1); a request with a sampled incoming
            ``traceparent`` is always traced (parent-based sampling).
    """

    otlp_endpoint: str | None = None
    service_name: str = "blaze"
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
