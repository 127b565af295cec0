"""Issue 13 (traces): the server span, its children and their attributes, ``traceparent`` in and
out, sampling, and tracing off (nothing made, OpenTelemetry's SDK not even imported).

Spans go to the SDK's in-memory exporter; the HTTP-level span trees are in
``tests/api/test_tracing.py``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from blaze_ai.api.monitoring import build_tracing
from blaze_ai.config.observability import TracingConfig
from blaze_ai.errors import (
    ConfigError,
    EngineUnavailableError,
    InvalidRequestError,
    NoHealthyDeploymentError,
)
from blaze_ai.observability.request import RequestRecord
from blaze_ai.observability.spans import NO_SPAN, outgoing_headers, span
from blaze_ai.observability.tracing import RequestTrace, Tracing
from blaze_ai.types import (
    ChatRequest,
    Choice,
    FinishReason,
    ImageRequest,
    Message,
    SamplingParams,
    TextResult,
    Usage,
)

CHAT = "/v1/chat/completions"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def traced(**config: Any) -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    return Tracing(TracingConfig(**config), processor=SimpleSpanProcessor(exporter)), exporter


def scope(path: str = CHAT, headers: dict[str, str] | None = None) -> dict[str, Any]:
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "method": "POST", "path": path, "scheme": "http", "headers": raw}


def request(tracing: Tracing, path: str = CHAT, **headers: str) -> RequestRecord:
    record = RequestRecord(path, 0.0)
    record.trace = tracing.start(scope(path, headers), "req-1")
    return record


def trace_of(record: RequestRecord) -> RequestTrace:
    assert record.trace is not None
    return record.trace


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    spans = exporter.get_finished_spans()
    found = {s.name: s for s in spans}
    assert len(found) == len(spans), [s.name for s in spans]
    return found


def test_the_server_span_carries_http_and_genai_attributes_but_no_content() -> None:
    tracing, exporter = traced(service_name="blaze-test")
    record = request(tracing)
    chat = ChatRequest(
        "alias",
        (Message("user", "a secret prompt"),),
        SamplingParams(max_tokens=7, temperature=0.5, top_p=0.9, seed=3, n=2),
    )
    trace_of(record).note_request(chat)
    record.model = "served"
    record.add_result(
        TextResult(
            (Choice(0, "a secret answer", FinishReason.STOP), Choice(1, "x", FinishReason.LENGTH)),
            Usage(11, 5),
        )
    )
    trace_of(record).end(record, 200, "alias")

    [server] = exporter.get_finished_spans()
    assert server.name == "chat alias"
    assert server.kind is SpanKind.SERVER
    assert server.status.status_code is StatusCode.UNSET
    assert server.resource.attributes["service.name"] == "blaze-test"
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": CHAT,
        "url.path": CHAT,
        "url.scheme": "http",
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "blaze",
        "gen_ai.request.model": "alias",
        "gen_ai.response.model": "served",
        "gen_ai.request.max_tokens": 7,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.top_p": 0.9,
        "gen_ai.request.seed": 3,
        "gen_ai.request.choice.count": 2,
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 5,
        "gen_ai.response.finish_reasons": ("length", "stop"),
        "blaze.request.id": "req-1",
    }
    assert "secret" not in repr(server.to_json())


def test_a_request_for_an_unknown_model_keeps_the_bare_operation_as_its_span_name() -> None:
    """Review of issue 13: a 404 named its span after whatever the client sent (a 200,000
    character name made a 200,005 character span name; random names, unbounded span names)."""
    tracing, exporter = traced()
    record = request(tracing)
    trace_of(record).end(record, 404, "M" * 200_000)
    [server] = exporter.get_finished_spans()
    assert server.name == "chat"
    assert server.attributes is not None
    assert server.attributes["gen_ai.request.model"] == "M" * 256


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("/v1/completions", "text_completion"),
        ("/v1/images/generations", "generate_content"),
        ("/v1/embeddings", "embeddings"),
    ],
)
def test_each_endpoint_has_its_genai_operation(path: str, operation: str) -> None:
    tracing, exporter = traced()
    record = request(tracing, path)
    record.model = "m"
    trace_of(record).end(record, 200, "m")
    [server] = exporter.get_finished_spans()
    assert server.name == f"{operation} m"
    assert server.attributes is not None
    assert server.attributes["gen_ai.operation.name"] == operation


def test_an_image_request_notes_its_count_and_seed_only() -> None:
    tracing, exporter = traced()
    record = request(tracing, "/v1/images/generations")
    trace_of(record).note_request(ImageRequest("digits", "a seven", n=3, seed=5))
    trace_of(record).end(record, 200, "digits")
    [server] = exporter.get_finished_spans()
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.request.choice.count"] == 3
    assert attributes["gen_ai.request.seed"] == 5
    assert "gen_ai.request.temperature" not in attributes


def test_a_caller_error_sets_error_type_and_leaves_the_status_unset() -> None:
    tracing, exporter = traced()
    record = request(tracing)
    record.fail(InvalidRequestError("temperature: too high", param="temperature"))
    trace_of(record).end(record, 400, "m")
    [server] = exporter.get_finished_spans()
    assert server.attributes is not None
    assert server.attributes["error.type"] == "caller_invalid_request"
    assert server.attributes["http.response.status_code"] == 400
    assert "gen_ai.response.model" not in server.attributes
    assert server.status.status_code is StatusCode.UNSET  # a 4xx is the caller's (HTTP rule)


def test_a_server_error_sets_the_status_error() -> None:
    tracing, exporter = traced()
    record = request(tracing)
    record.fail(NoHealthyDeploymentError("no deployment of m can serve now", retry_after_s=1))
    trace_of(record).end(record, 503, "m")
    [server] = exporter.get_finished_spans()
    assert server.attributes is not None
    assert server.attributes["error.type"] == "provider_no_healthy_deployment"
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "no deployment of m can serve now"


def test_a_client_that_went_away_is_cancelled_without_a_status_code() -> None:
    tracing, exporter = traced()
    record = request(tracing)
    trace_of(record).end(record, 499, "m")
    [server] = exporter.get_finished_spans()
    assert server.attributes is not None
    assert server.attributes["error.type"] == "cancelled"
    assert "http.response.status_code" not in server.attributes
    assert server.status.status_code is StatusCode.UNSET


def test_an_incoming_traceparent_is_the_parent_of_the_server_span() -> None:
    tracing, exporter = traced()
    record = request(
        tracing, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01", tracestate="vendor=value"
    )
    assert trace_of(record).trace_id == TRACE_ID
    trace_of(record).end(record, 200, "m")
    [server] = exporter.get_finished_spans()
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and server.parent.is_remote
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.context.trace_state.get("vendor") == "value"


def test_an_unsampled_parent_is_not_recorded_however_high_the_ratio() -> None:
    tracing, exporter = traced(sample_ratio=1.0)
    record = request(tracing, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00")
    trace_of(record).end(record, 200, "m")
    assert exporter.get_finished_spans() == ()


def test_an_unsampled_trace_makes_no_children_but_passes_its_context_upstream() -> None:
    tracing, exporter = traced()
    record = request(tracing, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-00")
    assert span(record, "admission") is NO_SPAN
    attempt = trace_of(record).attempt("m/0", "remote", 1)
    with attempt.outgoing():
        headers = outgoing_headers()
    attempt.settle("error", EngineUnavailableError("down"))
    attempt.end()
    trace_of(record).end(record, 200, "m")
    assert exporter.get_finished_spans() == ()
    assert headers is not None
    version, trace_id, _, flags = headers["traceparent"].split("-")
    assert (version, trace_id, int(flags, 16) & 1) == ("00", TRACE_ID, 0)


def test_a_sampled_parent_is_recorded_however_low_the_ratio() -> None:
    tracing, exporter = traced(sample_ratio=0.0)
    unparented = request(tracing)
    trace_of(unparented).end(unparented, 200, "m")
    assert exporter.get_finished_spans() == ()
    parented = request(tracing, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    trace_of(parented).end(parented, 200, "m")
    assert len(exporter.get_finished_spans()) == 1


def test_an_active_outer_span_is_the_parent_rather_than_the_header() -> None:
    """Under an outer instrumentation (one that already read the headers), Blaze's span nests
    in its span."""
    tracing, exporter = traced()
    outer = TracerProvider().get_tracer("outer").start_span("outer")
    token = otel_context.attach(otel_trace.set_span_in_context(outer))
    try:
        record = request(tracing, traceparent=f"00-{TRACE_ID}-{PARENT_ID}-01")
    finally:
        otel_context.detach(token)
    trace_of(record).end(record, 200, "m")
    [server] = exporter.get_finished_spans()
    assert server.parent is not None
    assert server.parent.span_id == outer.get_span_context().span_id


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    tracing, exporter = traced()
    record = request(tracing, traceparent="00-not-a-trace-01")
    trace_of(record).end(record, 200, "m")
    [server] = exporter.get_finished_spans()
    assert server.parent is None


def test_oversized_or_malformed_trace_headers_start_a_new_trace_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Review of issue 13: OpenTelemetry logged a warning per request for a traceparent over
    512 characters or a bad tracestate (echoing the header), a log flood any client could
    cause. Such headers are now ignored before they reach the propagator."""
    tracing, exporter = traced()
    caplog.set_level("DEBUG", logger="opentelemetry")
    good = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    for headers in (
        {"traceparent": "00-" + "a" * 600},
        {"traceparent": good + "x"},
        {"traceparent": good, "tracestate": "k=" + "v" * 600},
    ):
        record = request(tracing, **headers)
        trace_of(record).end(record, 200, "m")
    spans = exporter.get_finished_spans()
    assert [span.parent for span in spans[:2]] == [None, None]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_child_spans_hang_under_the_server_span_and_note_errors() -> None:
    tracing, exporter = traced()
    record = request(tracing)
    record.model = "m"
    with span(record, "admission"):
        pass
    with pytest.raises(EngineUnavailableError), span(record, "cache lookup") as lookup:
        lookup.set("blaze.cache.status", "miss")
        raise EngineUnavailableError("redis is down")
    with pytest.raises(asyncio.CancelledError), span(record, "step"):
        raise asyncio.CancelledError
    trace_of(record).end(record, 200, "m")

    spans = by_name(exporter)
    server = spans["chat m"]
    for name in ("admission", "cache lookup", "step"):
        assert spans[name].parent is not None
        assert spans[name].parent.span_id == server.context.span_id
        assert spans[name].context.trace_id == server.context.trace_id
    assert spans["admission"].status.status_code is StatusCode.UNSET
    lookup_span = spans["cache lookup"]
    assert lookup_span.attributes is not None
    assert lookup_span.attributes["blaze.cache.status"] == "miss"
    assert lookup_span.attributes["error.type"] == "provider_unavailable"
    assert lookup_span.status.status_code is StatusCode.ERROR
    cancelled = spans["step"]
    assert cancelled.attributes is not None
    assert cancelled.attributes["error.type"] == "cancelled"
    assert cancelled.status.status_code is StatusCode.UNSET


def test_an_untraced_request_gets_the_shared_no_span() -> None:
    assert span(None, "admission") is NO_SPAN
    assert span(RequestRecord(CHAT, 0.0), "admission") is NO_SPAN
    with span(None, "admission") as nothing:
        nothing.set("key", "value")


def test_an_attempt_is_two_spans_and_sends_its_engine_span_upstream() -> None:
    tracing, exporter = traced()
    record = request(tracing)
    record.model = "m"
    attempt = trace_of(record).attempt("m/0", "remote", 1)
    assert outgoing_headers() is None
    with attempt.outgoing():
        headers = outgoing_headers()
    assert outgoing_headers() is None
    attempt.settle("success")
    attempt.end()
    trace_of(record).end(record, 200, "m")

    spans = by_name(exporter)
    server, attempt_span, engine = spans["chat m"], spans["attempt"], spans["engine"]
    assert attempt_span.parent is not None and engine.parent is not None
    assert attempt_span.parent.span_id == server.context.span_id
    assert engine.parent.span_id == attempt_span.context.span_id
    assert engine.kind is SpanKind.CLIENT
    assert dict(attempt_span.attributes or {}) == {
        "blaze.deployment.name": "m/0",
        "blaze.attempt.number": 1,
        "blaze.engine.kind": "remote",
        "blaze.attempt.outcome": "success",
    }
    ids = engine.context
    assert headers == {
        "traceparent": f"00-{ids.trace_id:032x}-{ids.span_id:016x}-{ids.trace_flags:02x}"
    }


def test_a_failed_attempt_marks_both_spans_and_an_in_process_engine_is_internal() -> None:
    tracing, exporter = traced()
    record = request(tracing)
    attempt = trace_of(record).attempt("m/1", "llm", 2)
    attempt.settle("error", EngineUnavailableError("engine m/1 is failed"))
    attempt.end()
    spans = by_name(exporter)
    assert spans["engine"].kind is SpanKind.INTERNAL
    for name in ("attempt", "engine"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert spans[name].attributes is not None
        assert spans[name].attributes["error.type"] == "provider_unavailable"
    assert spans["attempt"].attributes is not None
    assert spans["attempt"].attributes["blaze.attempt.outcome"] == "error"


async def test_the_outgoing_headers_do_not_leak_into_other_tasks() -> None:
    tracing, _ = traced()
    attempt = trace_of(request(tracing)).attempt("m/0", "remote", 1)
    seen: list[object] = []

    async def elsewhere() -> None:
        seen.append(outgoing_headers())

    other = asyncio.create_task(elsewhere())  # created before: its own copy of the context
    with attempt.outgoing():
        inside = asyncio.create_task(elsewhere())  # created inside: sees the headers
        await asyncio.gather(other, inside)
    attempt.end()
    assert seen[0] is None
    assert isinstance(seen[1], dict) and "traceparent" in seen[1]


def test_tracing_without_an_endpoint_is_off() -> None:
    assert build_tracing(TracingConfig()) is None


def test_tracing_without_opentelemetry_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "blaze_ai.observability.tracing", None)  # import fails
    with pytest.raises(ConfigError, match="OpenTelemetry"):
        build_tracing(TracingConfig(otlp_endpoint="http://127.0.0.1:4318/v1/traces"))


def test_an_endpoint_builds_a_batch_exporter_to_it() -> None:
    tracing = build_tracing(TracingConfig(otlp_endpoint="http://127.0.0.1:9/v1/traces"))
    assert isinstance(tracing, Tracing)
    asyncio.run(tracing.shutdown())  # nothing queued: returns at once


def test_tracing_off_does_not_import_the_opentelemetry_sdk() -> None:
    """An untraced server imports neither Blaze's tracing module nor the SDK's tracing and
    exporters. (FastAPI imports the OpenTelemetry API; redis imports the SDK's metrics when
    the SDK is installed.)"""
    code = textwrap.dedent(
        """
        import sys
        from blaze_ai.api.app import create_app
        from blaze_ai.config.schema import Settings
        from blaze_ai.gateway import Gateway
        from blaze_ai.gateway.admission import Admission
        app = create_app(Settings(), Gateway([], admission=Admission(1), request_timeout_s=1))
        assert app.state.monitoring.tracing is None
        loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace",
                  "opentelemetry.exporter", "blaze_ai.observability.tracing"))]
        assert not loaded, loaded
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


class _HangingProcessor(SimpleSpanProcessor):
    """A span processor whose shutdown blocks like an exporter retrying a dead collector."""

    def __init__(self) -> None:
        super().__init__(InMemorySpanExporter())
        self.release = threading.Event()

    def shutdown(self) -> None:
        self.release.wait(30)


async def test_shutdown_waits_for_the_export_at_most_its_timeout() -> None:
    """Review of issue 13: with the collector down and spans queued, ``blaze serve`` took 23 s
    to stop (the exporter's retries; up to 30 s), past a container's stop grace period."""
    processor = _HangingProcessor()
    tracing = Tracing(TracingConfig(), processor=processor, shutdown_timeout_s=0.2)
    started = time.monotonic()
    await tracing.shutdown()
    assert time.monotonic() - started < 2
    processor.release.set()
