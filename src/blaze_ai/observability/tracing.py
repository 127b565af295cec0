"""OpenTelemetry traces of model requests: one server span each, a child span per step.

Imported only when tracing is on (``tracing.otlp_endpoint``, see
:class:`~blaze_ai.config.observability.TracingConfig`; OpenTelemetry is the ``tracing`` extra):
an untraced server loads neither this module nor the SDK's tracing and exporters. The request
path reaches it through the request's :class:`~blaze_ai.observability.request.RequestRecord`
(its ``trace``) and the do-nothing-when-off helpers of :mod:`blaze_ai.observability.spans`.

The spans of one request::

    chat smollm2                 SERVER  arrival -> end of the response (a stream's last byte)
    ├── admission                        the key's limits, then an admission slot
    ├── cache lookup                     blaze.cache.status (hit-memory, ..., miss)
    └── attempt                          one per routing attempt: blaze.deployment.name,
        │                                blaze.attempt.number, blaze.engine.kind,
        │                                blaze.attempt.outcome
        └── engine               CLIENT  the engine call (INTERNAL for an in-process engine);
                                         a remote upstream gets its traceparent

The server span carries HTTP attributes (``http.request.method``, ``http.route``,
``http.response.status_code``) and GenAI ones (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.usage.input_tokens``...), named as the GenAI semantic
conventions say (https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/): the
installed ``opentelemetry-semantic-conventions`` marks its ``gen_ai`` module as moved to the
GenAI conventions repository, so those names are spelled in :mod:`.trace_attributes`.
Prompts, outputs and keys never go on a span. A failure sets ``error.type`` (the error's
``metric_error_type``); the server span's status is ERROR for a 5xx only (a 4xx is the
caller's: the HTTP server-span rule), an attempt's or a step's for any error.

An incoming W3C ``traceparent`` (and ``tracestate``) makes the server span its child (or, when
an outer instrumentation has a span active around the app, that span); the sampler is
``ParentBased(TraceIdRatioBased(sample_ratio))``. Streams are async generators
resumed across yields, so no span is ever attached to the ambient context (a detach in another
step fails): children are started with an explicit parent and ended explicitly.

Each app has its own :class:`~opentelemetry.sdk.trace.TracerProvider` (the global one is left
alone); spans go out in batches from a background thread (``BatchSpanProcessor``, OTLP over
HTTP/protobuf) and :meth:`Tracing.shutdown` flushes them when the app stops.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.semconv.attributes.url_attributes import URL_PATH, URL_SCHEME
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from blaze_ai import __version__
from blaze_ai.errors import BlazeError
from blaze_ai.observability.request import CLIENT_CLOSED_REQUEST
from blaze_ai.observability.spans import NO_SPAN, AttributeValue, Outgoing, SpanScope
from blaze_ai.observability.trace_attributes import (
    ATTEMPT,
    ATTEMPT_NUMBER,
    ATTEMPT_OUTCOME,
    CACHE_HIT,
    DEPLOYMENT_NAME,
    ENGINE,
    ENGINE_KIND,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_CHOICE_COUNT,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_SEED,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_FINISH_REASONS,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    OPERATIONS,
    PROVIDER,
    REQUEST_ID,
)
from blaze_ai.types import ImageRequest, TextRequest

if TYPE_CHECKING:
    from blaze_ai.config.observability import TracingConfig
    from blaze_ai.observability.request import RequestRecord

logger = logging.getLogger(__name__)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
"""A W3C ``traceparent`` (version 00's shape); anything else starts a new trace quietly."""
_TRACE_HEADER_LIMITS = {b"traceparent": 55, b"tracestate": 512}
"""Longest accepted trace headers, in bytes (W3C Trace Context: 55, and 512 for tracestate);
a longer one is ignored instead of making OpenTelemetry log a warning per request."""

NETWORK_ENGINES = frozenset({"remote"})
"""Engine kinds reached over the network: their engine span is a CLIENT span."""
MAX_ASKED_MODEL_CHARS = 256
"""``gen_ai.request.model`` keeps this many characters of the name a client sent (any string:
a request for an unknown model is traced too)."""
SHUTDOWN_TIMEOUT_S = 5.0
"""Most seconds the server's stop waits for the spans still queued to be exported: with the
collector unreachable, the exporter's retries would hold it for up to 30 s (past a container's
stop grace period, so the engines, the usage writer and the rest would never stop cleanly)."""
CANCELLED = "cancelled"
"""``error.type`` of a request or span whose client went away (its status stays unset)."""


class Tracing:
    """The traces of one app: its tracer provider, sampler and exporter.

    Args:
        config: service name, sample ratio, and the OTLP/HTTP endpoint spans are sent to.
        processor: where ended spans go instead of a ``BatchSpanProcessor`` exporting to
            ``config.otlp_endpoint`` (tests pass a ``SimpleSpanProcessor`` over an
            ``InMemorySpanExporter``).
        shutdown_timeout_s: most seconds :meth:`shutdown` waits for the queued spans.

    Raises:
        ValueError: neither ``processor`` nor ``config.otlp_endpoint`` was given.
    """

    def __init__(
        self,
        config: TracingConfig,
        *,
        processor: SpanProcessor | None = None,
        shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
    ) -> None:
        self._shutdown_timeout_s = shutdown_timeout_s
        if processor is None:
            processor = _otlp_processor(config)
        self._provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({SERVICE_NAME: config.service_name}),
            shutdown_on_exit=False,  # the app's lifespan shuts it down
        )
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer("blaze_ai", __version__)
        self._propagator = TraceContextTextMapPropagator()

    def start(self, scope: Mapping[str, Any], request_id: str) -> RequestTrace:
        """Open the server span of the HTTP request ``scope`` (an ASGI scope) arriving now."""
        path = scope["path"]
        operation = OPERATIONS.get(path, path)
        attributes: dict[str, AttributeValue] = {
            HTTP_REQUEST_METHOD: scope["method"],
            HTTP_ROUTE: path,
            URL_PATH: path,
            URL_SCHEME: scope.get("scheme", "http"),
            GEN_AI_OPERATION_NAME: operation,
            GEN_AI_PROVIDER_NAME: PROVIDER,
            REQUEST_ID: request_id,
        }
        span = self._tracer.start_span(
            operation, self._parent(scope), kind=SpanKind.SERVER, attributes=attributes
        )
        return RequestTrace(self._tracer, span, operation)

    def _parent(self, scope: Mapping[str, Any]) -> Context:
        """The server span's parent: the ambient span when one is active (an outer
        instrumentation, which has read the headers), else the request's ``traceparent``."""
        ambient = otel_context.get_current()
        if otel_trace.get_current_span(ambient).get_span_context().is_valid:
            return ambient
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name in _TRACE_HEADER_LIMITS and len(value) <= _TRACE_HEADER_LIMITS[name]
        }
        if "traceparent" not in carrier or not _TRACEPARENT.match(carrier["traceparent"]):
            return Context()  # none, or malformed: a new trace (and no warning logged per call)
        return self._propagator.extract(carrier, Context())

    async def shutdown(self) -> None:
        """Export the spans still queued and stop the exporter, waiting at most
        ``shutdown_timeout_s``; the export (a blocking HTTP call) runs in a daemon thread,
        left behind, spans and all, when it takes longer (a collector that does not answer)."""
        done = threading.Event()

        def shut_down() -> None:
            try:
                self._provider.shutdown()
            finally:
                done.set()

        threading.Thread(target=shut_down, name="blaze-tracing-shutdown", daemon=True).start()
        if not await asyncio.to_thread(done.wait, self._shutdown_timeout_s):
            logger.warning("tracing_flush_timeout", extra={"timeout_s": self._shutdown_timeout_s})


def _otlp_processor(config: TracingConfig) -> SpanProcessor:
    """Batches of spans, exported by OTLP/HTTP (protobuf) to ``config.otlp_endpoint``."""
    if config.otlp_endpoint is None:
        raise ValueError("tracing needs tracing.otlp_endpoint or a span processor")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return BatchSpanProcessor(OTLPSpanExporter(endpoint=config.otlp_endpoint))


class RequestTrace:
    """The trace of one request: its server span, and the children of its steps.

    Made by :meth:`Tracing.start`; the gateway notes the request's parameters and finish
    reasons, and :meth:`end` closes the server span once the response has ended.

    A trace the sampler left out records nothing, so it makes no child spans: its attempts
    only pass the server span's context (sampled flag off) upstream, whose own parent-based
    sampler then leaves its part out too.
    """

    __slots__ = ("_context", "_finish_reasons", "_operation", "_recording", "_span", "_tracer")

    def __init__(self, tracer: Tracer, span: Span, operation: str) -> None:
        self._tracer = tracer
        self._span = span
        self._recording = span.is_recording()
        self._context = otel_trace.set_span_in_context(span, Context())
        self._operation = operation
        self._finish_reasons: set[str] = set()

    @property
    def trace_id(self) -> str:
        """The trace id, 32 hex digits (for the access log)."""
        return format(self._span.get_span_context().trace_id, "032x")

    def child(self, name: str) -> SpanScope:
        """A child span of the server span, started now."""
        if not self._recording:
            return NO_SPAN
        return ChildSpan(self._tracer.start_span(name, self._context))

    def attempt(self, deployment: str, kind: str, number: int) -> AttemptTrace:
        """The spans of one routing attempt on ``deployment`` (its engine of ``kind``), started
        now; ``number`` counts the tries on its model from 1."""
        if not self._recording:
            unsampled = otel_trace.NonRecordingSpan(self._span.get_span_context())
            return AttemptTrace(unsampled, unsampled)
        attempt = self._tracer.start_span(
            ATTEMPT,
            self._context,
            attributes={DEPLOYMENT_NAME: deployment, ATTEMPT_NUMBER: number, ENGINE_KIND: kind},
        )
        engine = self._tracer.start_span(
            ENGINE,
            otel_trace.set_span_in_context(attempt, Context()),
            kind=SpanKind.CLIENT if kind in NETWORK_ENGINES else SpanKind.INTERNAL,
        )
        return AttemptTrace(attempt, engine)

    def note_request(self, req: TextRequest | ImageRequest) -> None:
        """Note the request's generation parameters (never its prompt)."""
        if self._recording:
            self._span.set_attributes(_request_attributes(req))

    def note_finish(self, reason: str) -> None:
        """Note why a choice ended (``stop``, ``length``...)."""
        self._finish_reasons.add(reason)

    def end(self, record: RequestRecord, status: int, asked: str | None) -> None:
        """Close the server span: the response ended with HTTP ``status`` (499: the client
        went away), for the model the client ``asked`` for (None when it named none).

        The span is named ``<operation> <asked>`` only when ``asked`` named a served model
        (``record.model``): a client's arbitrary names (a 404) would make the span names, which
        trace stores index, an unbounded set."""
        span = self._span
        if not self._recording:
            span.end()
            return
        attributes: dict[str, AttributeValue] = {}
        if asked:
            attributes[GEN_AI_REQUEST_MODEL] = asked[:MAX_ASKED_MODEL_CHARS]
            if record.model:  # a served name or alias: the span name stays a bounded set
                span.update_name(f"{self._operation} {asked}")
        if status != CLIENT_CLOSED_REQUEST:
            attributes[HTTP_RESPONSE_STATUS_CODE] = status
        error_type = _error_type(record.error, status)
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
        elif record.model:
            attributes[GEN_AI_RESPONSE_MODEL] = record.model
        attributes.update(_usage_attributes(record))
        span.set_attributes(attributes)
        if self._finish_reasons:
            span.set_attribute(GEN_AI_RESPONSE_FINISH_REASONS, sorted(self._finish_reasons))
        if status >= 500 and status != CLIENT_CLOSED_REQUEST:
            message = record.error.message if record.error is not None else None
            span.set_status(Status(StatusCode.ERROR, message))
        span.end()


def _request_attributes(req: TextRequest | ImageRequest) -> dict[str, AttributeValue]:
    """The GenAI request attributes of ``req``: what it asks for, never what it says."""
    attributes: dict[str, AttributeValue] = {}
    if isinstance(req, ImageRequest):
        n, seed = req.n, req.seed
    else:
        params = req.params
        n, seed = params.n, params.seed
        attributes[GEN_AI_REQUEST_TEMPERATURE] = params.temperature
        attributes[GEN_AI_REQUEST_TOP_P] = params.top_p
        if params.max_tokens is not None:
            attributes[GEN_AI_REQUEST_MAX_TOKENS] = params.max_tokens
    if n != 1:
        attributes[GEN_AI_REQUEST_CHOICE_COUNT] = n
    if seed is not None:
        attributes[GEN_AI_REQUEST_SEED] = seed
    return attributes


def _usage_attributes(record: RequestRecord) -> dict[str, AttributeValue]:
    """Token counts (and a cache hit) of the answer."""
    attributes: dict[str, AttributeValue] = {}
    usage = record.usage
    if usage is not None:
        attributes[GEN_AI_USAGE_INPUT_TOKENS] = usage.prompt_tokens
        attributes[GEN_AI_USAGE_OUTPUT_TOKENS] = usage.completion_tokens
        if usage.cached_tokens:
            attributes[GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = usage.cached_tokens
    if record.cache_hit:
        attributes[CACHE_HIT] = True
    return attributes


def _error_type(error: BlazeError | None, status: int) -> str | None:
    """``error.type`` of a request that ended with ``error`` or HTTP ``status``; None when it
    succeeded."""
    if error is not None:
        return error.metric_error_type
    if status == CLIENT_CLOSED_REQUEST:
        return CANCELLED
    return str(status) if status >= 400 else None


class ChildSpan:
    """A child span of a request, ended when its ``with`` block ends; an exception leaving
    the block sets ``error.type`` (and the status ERROR, unless it is a cancellation)."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> ChildSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            _note_failure(self._span, exc)
        self._span.end()

    def set(self, key: str, value: AttributeValue) -> None:
        """Set one attribute of the span."""
        self._span.set_attribute(key, value)


def _note_failure(span: Span, exc: BaseException) -> None:
    """Note ``exc`` on ``span``: a Blaze error by its ``metric_error_type``, a cancellation
    (the client went away) as ``cancelled`` with the status left unset, any other exception by
    its class."""
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        span.set_attribute(ERROR_TYPE, CANCELLED)
        return
    if isinstance(exc, BlazeError):
        error_type, message = exc.metric_error_type, exc.message
    else:
        error_type = f"{type(exc).__module__}.{type(exc).__qualname__}"
        message = type(exc).__name__
    span.set_attribute(ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, message))


class AttemptTrace:
    """The spans of one routing attempt: ``attempt``, and its child ``engine``, both started.

    Made by :meth:`RequestTrace.attempt`; :class:`~blaze_ai.gateway.deployment.Attempt`
    gives it the attempt's verdict (:meth:`settle`) and ends it (:meth:`end`).
    """

    __slots__ = ("_attempt", "_engine", "_headers")

    def __init__(self, attempt: Span, engine: Span) -> None:
        self._attempt = attempt
        self._engine = engine
        self._headers: dict[str, str] | None = None

    def outgoing(self) -> Outgoing:
        """Within its ``with`` block, the engine's requests upstream carry the engine span's
        ``traceparent`` (see :mod:`blaze_ai.observability.spans`)."""
        if self._headers is None:
            self._headers = {}
            context = otel_trace.set_span_in_context(self._engine, Context())
            TraceContextTextMapPropagator().inject(self._headers, context)
        return Outgoing(self._headers)

    def settle(self, outcome: str, error: BlazeError | None = None) -> None:
        """The attempt's verdict: ``outcome`` (see :data:`ATTEMPT_OUTCOME`), and the
        ``error`` it failed with."""
        self._attempt.set_attribute(ATTEMPT_OUTCOME, outcome)
        if error is not None:
            for span in (self._engine, self._attempt):
                _note_failure(span, error)

    def end(self) -> None:
        """End both spans (the engine's first)."""
        self._engine.end()
        self._attempt.end()
