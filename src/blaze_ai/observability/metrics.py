"""Every Prometheus metric Blaze exports, defined here and only here.

:data:`METRICS` declares each one: name, type, labels and help. Names follow Prometheus'
conventions (``blaze_<area>_<thing>_<unit>``, counters end in ``_total``, seconds and bytes as
base units) and labels are bounded: model, deployment, endpoint, team, outcome, error_type,
level, limit, state (never a request id, a key or a prompt). ``tests/unit/observability`` pins
the set in a golden file, so a rename fails the build; a renamed metric keeps its old name for
one release through :data:`DEPRECATED_ALIASES`.

Two kinds of metric, by where the number lives:

- **observed on the request path** (counters and histograms of requests, tokens, latency,
  errors): :meth:`Metrics.observe_request` reads one :class:`~.request.RequestRecord` when its
  response has ended (a handful of label lookups and increments: about 10 µs);
- **read at scrape time** from counters the gateway and the engines keep anyway (deployment
  outcomes, breakers, engine queues and batches, cache levels): :meth:`Metrics.update` stores a
  :class:`~.samples.GatewaySample` and :meth:`Metrics.collect` turns it into families, so they
  cost the request path nothing.

Histogram buckets of the token latencies are vLLM's (``vllm/v1/metrics/loggers.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from blaze_ai.observability.request import CLIENT_CLOSED_REQUEST, RequestRecord
from blaze_ai.observability.samples import DeploymentSample, GatewaySample

MetricType = Literal["counter", "gauge", "histogram"]

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds: a cached answer (milliseconds) to a long generation (minutes)."""
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0)  # fmt: skip
"""Seconds to the first token (vLLM's buckets)."""
ITL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
               2.5)  # fmt: skip
"""Seconds between two tokens (vLLM's buckets)."""
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
"""Seconds Blaze itself adds to a request: a fraction of a millisecond when all is well."""

BREAKER_STATE_VALUES = {"closed": 0, "half_open": 1, "open": 2}
"""``blaze_breaker_state``'s value per state."""
ENGINE_STATES = ("starting", "ready", "degraded", "failed", "stopped")
"""The values of ``blaze_engine_state``'s ``state`` label."""
OUTCOMES = ("success", "caller_error", "policy_error", "provider_error", "blaze_error", "cancelled")
"""The values of ``blaze_requests_total``'s ``outcome`` label: success, an error by its fault
domain, or cancelled (the client went away)."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One exported metric.

    Attributes:
        name: the exposed name (a counter's with its ``_total``).
        type: ``counter``, ``gauge`` or ``histogram``.
        labels: its label names, in order.
        help: the ``# HELP`` text.
        buckets: a histogram's upper bounds, in its unit.
    """

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    buckets: tuple[float, ...] = ()


_MD = ("model", "deployment")

METRICS: tuple[MetricSpec, ...] = (
    # requests, observed when each response ends
    MetricSpec("blaze_requests_total", "counter", ("model", "endpoint", "outcome"),
               "Model requests finished, by outcome (success, <fault>_error, cancelled)."),
    MetricSpec("blaze_request_duration_seconds", "histogram", ("model", "endpoint"),
               "Seconds from a request's arrival to the end of its response.", REQUEST_BUCKETS),
    MetricSpec("blaze_time_to_first_token_seconds", "histogram", ("model",),
               "Seconds from a streamed request's arrival to its first content chunk.",
               TTFT_BUCKETS),
    MetricSpec("blaze_inter_token_latency_seconds", "histogram", ("model",),
               "Mean seconds between two content chunks of one streamed answer.", ITL_BUCKETS),
    MetricSpec("blaze_prompt_tokens_total", "counter", ("model", "team"),
               "Prompt tokens of answered requests."),
    MetricSpec("blaze_completion_tokens_total", "counter", ("model", "team"),
               "Completion tokens generated (cache hits count none)."),
    MetricSpec("blaze_cached_prompt_tokens_total", "counter", ("model", "team"),
               "Prompt tokens served from a cache (prefix cache or response cache)."),
    MetricSpec("blaze_images_total", "counter", ("model",), "Images generated."),
    MetricSpec("blaze_errors_total", "counter", ("model", "error_type"),
               "Failed requests by error type: caller_*, policy_*, provider_*, blaze_*."),
    MetricSpec("blaze_gateway_overhead_seconds", "histogram", ("model",),
               "Seconds of a request not spent inside an engine or upstream.", OVERHEAD_BUCKETS),
    MetricSpec("blaze_rate_limited_total", "counter", ("team", "limit"),
               "Requests refused by a key's or team's rpm, tpm or max_parallel limit."),
    MetricSpec("blaze_requests_in_progress", "gauge", (),
               "Requests the gateway holds now (admitted, not finished)."),
    # routing and resilience, per deployment
    MetricSpec("blaze_deployment_latency_seconds", "histogram", _MD,
               "Seconds of successful attempts (a stream's until its last chunk).",
               REQUEST_BUCKETS),
    MetricSpec("blaze_deployment_in_flight", "gauge", _MD, "Attempts in progress."),
    MetricSpec("blaze_deployment_requests_total", "counter", (*_MD, "outcome"),
               "Attempts finished: success, failure, rejected (the request's fault or a full "
               "queue), cancelled (client gone)."),
    MetricSpec("blaze_breaker_state", "gauge", _MD,
               "Circuit breaker state: 0 closed, 1 half_open, 2 open."),
    MetricSpec("blaze_breaker_transitions_total", "counter", (*_MD, "to"),
               "Circuit breaker transitions, by the state entered."),
    MetricSpec("blaze_deployment_healthy", "gauge", _MD, "1 while active health checks pass."),
    MetricSpec("blaze_retries_total", "counter", ("model",),
               "Attempts made after a failed attempt on the same model."),
    MetricSpec("blaze_fallbacks_total", "counter", ("model",),
               "Fallback models tried for requests to this model."),
    MetricSpec("blaze_engine_restarts_total", "counter", _MD,
               "Engine restarts by the supervisor."),
    MetricSpec("blaze_engine_state", "gauge", (*_MD, "state"),
               "1 for the engine's current state, 0 for the others."),
    # engines
    MetricSpec("blaze_queue_depth", "gauge", _MD, "Engine requests waiting to start."),
    MetricSpec("blaze_batch_size", "gauge", _MD, "Sequences an LLM engine decodes together now."),
    MetricSpec("blaze_image_batch_size", "gauge", _MD,
               "Images a diffusion engine denoises together now."),
    MetricSpec("blaze_prefill_tokens_total", "counter", _MD,
               "Prompt tokens run through the model by prefills."),
    MetricSpec("blaze_prefix_cache_hit_tokens_total", "counter", _MD,
               "Prompt tokens whose keys and values came from the prefix cache."),
    MetricSpec("blaze_prefix_cache_bytes", "gauge", _MD, "Bytes the prefix cache holds."),
    MetricSpec("blaze_backpressure_rejections_total", "counter", _MD,
               "Requests refused with 429 because a queue was full (deployment \"\": the "
               "gateway's admission)."),
    # response cache
    MetricSpec("blaze_cache_requests_total", "counter", ("level", "result"),
               "Response cache lookups per level, by result (hit, miss)."),
    MetricSpec("blaze_cache_bytes", "gauge", ("level",), "Bytes a response cache level holds."),
    MetricSpec("blaze_cache_evictions_total", "counter", ("level",),
               "Entries a response cache level dropped to stay under its bound."),
)  # fmt: skip
"""Every metric Blaze exports."""

DEPRECATED_ALIASES: Mapping[str, str] = {}
"""Old name -> new name of renamed metrics, each exported under both names for one release
(the old one's help says it is deprecated)."""

SPECS = {spec.name: spec for spec in METRICS}


class Metrics(Collector):
    """The metrics of one Blaze process, in a registry of their own.

    Args:
        aliases: old name -> new name of renamed metrics (default :data:`DEPRECATED_ALIASES`).

    Attributes:
        registry: what ``/metrics`` exposes.
    """

    def __init__(self, *, aliases: Mapping[str, str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)  # process_* (CPU, memory, open files)
        self._aliases = dict(DEPRECATED_ALIASES if aliases is None else aliases)
        self._sample = GatewaySample()
        self._requests = _counter("blaze_requests_total", self.registry)
        self._duration = _histogram("blaze_request_duration_seconds", self.registry)
        self._ttft = _histogram("blaze_time_to_first_token_seconds", self.registry)
        self._itl = _histogram("blaze_inter_token_latency_seconds", self.registry)
        self._prompt = _counter("blaze_prompt_tokens_total", self.registry)
        self._completion = _counter("blaze_completion_tokens_total", self.registry)
        self._cached = _counter("blaze_cached_prompt_tokens_total", self.registry)
        self._images = _counter("blaze_images_total", self.registry)
        self._errors = _counter("blaze_errors_total", self.registry)
        self._overhead = _histogram("blaze_gateway_overhead_seconds", self.registry)
        self._rate_limited = _counter("blaze_rate_limited_total", self.registry)
        self._deployment_latency = _histogram("blaze_deployment_latency_seconds", self.registry)
        self.registry.register(self)

    def deployment_latency(self, model: str, deployment: str) -> Callable[[float], None]:
        """The observer of one deployment's successful attempt latencies, in seconds."""
        return self._deployment_latency.labels(model, deployment).observe

    def observe_request(self, record: RequestRecord, status: int, latency_s: float) -> None:
        """Count one model request whose response has ended.

        Args:
            record: what the request did.
            status: its HTTP status (499: the client went away before the answer).
            latency_s: seconds from its arrival to the end of its response.
        """
        model, endpoint = record.model, record.endpoint
        outcome = self._outcome(record, status)
        self._requests.labels(model, endpoint, outcome).inc()
        self._duration.labels(model, endpoint).observe(latency_s)
        self._overhead.labels(model).observe(max(0.0, latency_s - record.engine_s))
        usage = record.usage
        if usage is not None:
            team = record.team
            self._prompt.labels(model, team).inc(usage.prompt_tokens)
            if usage.completion_tokens and not record.cache_hit:
                self._completion.labels(model, team).inc(usage.completion_tokens)
            if usage.cached_tokens:
                self._cached.labels(model, team).inc(usage.cached_tokens)
        if record.images:
            self._images.labels(model).inc(record.images)
        ttft = record.time_to_first_chunk_s()
        if ttft is not None:
            self._ttft.labels(model).observe(ttft)
            itl = record.inter_chunk_s()
            if itl is not None:
                self._itl.labels(model).observe(itl)

    def _outcome(self, record: RequestRecord, status: int) -> str:
        """The request's outcome label; an error is also counted by its type."""
        error = record.error
        if error is not None:
            self._errors.labels(record.model, error.metric_error_type).inc()
            limit = getattr(error, "limit", None)
            if limit is not None:
                self._rate_limited.labels(record.team, limit).inc()
            return f"{error.fault}_error"
        if status == CLIENT_CLOSED_REQUEST:
            return "cancelled"
        if status >= 500:
            self._errors.labels(record.model, "blaze_internal").inc()
            return "blaze_error"
        if status >= 400:
            self._errors.labels(record.model, "caller_invalid_request").inc()
            return "caller_error"
        return "success"

    def update(self, sample: GatewaySample) -> None:
        """Keep ``sample`` for the scrape-time families (the latest one wins)."""
        self._sample = sample

    def collect(self) -> Iterator[Metric]:
        """The scrape-time families, from the latest :meth:`update`."""
        sample = self._sample
        families = {spec.name: _family(spec) for spec in METRICS if _scraped(spec)}
        families["blaze_requests_in_progress"].add_metric([], sample.pending)
        for d in sample.deployments:
            _add_deployment(families, d)
        for m in sample.models:
            families["blaze_retries_total"].add_metric([m.model], m.retries)
            families["blaze_fallbacks_total"].add_metric([m.model], m.fallbacks)
            families["blaze_backpressure_rejections_total"].add_metric(
                [m.model, ""], m.admission_rejections
            )
        for level in sample.cache_levels:
            requests = families["blaze_cache_requests_total"]
            requests.add_metric([level.level, "hit"], level.hits)
            requests.add_metric([level.level, "miss"], level.misses)
            families["blaze_cache_evictions_total"].add_metric([level.level], level.evictions)
            if level.size_bytes is not None:
                families["blaze_cache_bytes"].add_metric([level.level], level.size_bytes)
        yield from families.values()

    def exposition(self) -> bytes:
        """The text exposition format of every metric (and of the deprecated aliases)."""
        return generate_latest(_Aliased(self.registry, self._aliases))

    def families(self) -> Iterable[Metric]:
        """Every family with its samples now, ``*_created`` left out (the dashboard's history
        reads them)."""
        return map(_without_created, self.registry.collect())


def _scraped(spec: MetricSpec) -> bool:
    return spec.type != "histogram" and spec.name not in _OBSERVED


_OBSERVED = frozenset(
    {
        "blaze_requests_total",
        "blaze_prompt_tokens_total",
        "blaze_completion_tokens_total",
        "blaze_cached_prompt_tokens_total",
        "blaze_images_total",
        "blaze_errors_total",
        "blaze_rate_limited_total",
    }
)
"""The counters observed on the request path; the other counters and gauges are scraped."""


def _add_deployment(
    families: dict[str, CounterMetricFamily | GaugeMetricFamily], d: DeploymentSample
) -> None:
    labels = [d.model, d.deployment]
    families["blaze_deployment_in_flight"].add_metric(labels, d.in_flight)
    for outcome, count in d.outcomes.items():
        families["blaze_deployment_requests_total"].add_metric([*labels, outcome], count)
    families["blaze_breaker_state"].add_metric(labels, BREAKER_STATE_VALUES[d.breaker_state])
    for state, count in d.breaker_transitions.items():
        families["blaze_breaker_transitions_total"].add_metric([*labels, state], count)
    families["blaze_deployment_healthy"].add_metric(labels, 1 if d.healthy else 0)
    families["blaze_engine_restarts_total"].add_metric(labels, d.restarts)
    for state in ENGINE_STATES:
        value = 1 if state == d.engine_state else 0
        families["blaze_engine_state"].add_metric([*labels, state], value)
    families["blaze_queue_depth"].add_metric(labels, d.queue_depth)
    batch = "blaze_image_batch_size" if d.images else "blaze_batch_size"
    families[batch].add_metric(labels, d.batch_size)
    if not d.images:
        families["blaze_prefill_tokens_total"].add_metric(labels, d.prefill_tokens)
        families["blaze_prefix_cache_hit_tokens_total"].add_metric(
            labels, d.prefix_cache_hit_tokens
        )
        families["blaze_prefix_cache_bytes"].add_metric(labels, d.prefix_cache_bytes)
    families["blaze_backpressure_rejections_total"].add_metric(labels, d.backpressure_rejections)


def _family(spec: MetricSpec) -> CounterMetricFamily | GaugeMetricFamily:
    """An empty scrape-time family of ``spec`` (a counter's name is given without ``_total``,
    which the client library appends)."""
    if spec.type == "counter":
        return CounterMetricFamily(spec.name.removesuffix("_total"), spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    spec = SPECS[name]
    return Counter(spec.name.removesuffix("_total"), spec.help, spec.labels, registry=registry)


def _histogram(name: str, registry: CollectorRegistry) -> Histogram:
    spec = SPECS[name]
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)


def _without_created(family: Metric) -> Metric:
    """``family`` without its ``*_created`` samples: a third of the output, nothing a query
    needs (prometheus_client's switch for them, ``disable_created_metrics``, is process-wide)."""
    family.samples = [s for s in family.samples if not s.name.endswith("_created")]
    return family


class _Aliased:
    """A registry view without ``*_created`` samples that also yields each renamed family
    under its old name."""

    def __init__(self, registry: CollectorRegistry, aliases: Mapping[str, str]) -> None:
        self._registry = registry
        self._old_names = {new: old for old, new in aliases.items()}

    def collect(self) -> Iterator[Metric]:
        for family in map(_without_created, self._registry.collect()):
            yield family
            old = self._old_names.get(_exposed_name(family))
            if old is not None:
                yield _renamed(family, old)


def _exposed_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


def _renamed(family: Metric, old: str) -> Metric:
    """A copy of ``family`` named ``old`` (its samples too), its help marked deprecated."""
    base = old.removesuffix("_total") if family.type == "counter" else old
    copy = Metric(base, f"Deprecated: use {_exposed_name(family)}. {family.documentation}",
                  family.type)  # fmt: skip
    copy.samples = [s._replace(name=base + s.name[len(family.name) :]) for s in family.samples]
    return copy
