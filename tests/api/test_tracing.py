"""Issue 13 (traces): the span tree of real requests through the app, over real fake upstreams on
loopback (``tests/unit/gateway``'s ``upstream`` fixture).

Spans go to the SDK's in-memory exporter, except in the last test, where the real OTLP/HTTP
exporter sends them to a receiver on loopback when the app stops.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from blaze_ai.config.schema import RuntimeConfig, Settings
from blaze_ai.devtools.fake_upstream import Behaviour, FakeUpstream
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway.build import build_gateway
from blaze_ai.observability.tracing import Tracing
from tests.api.conftest import asgi_client, serve_in_process
from tests.leaks import no_leaks
from tests.otlp_receiver import OtlpReceiver
from tests.unit.gateway.conftest import StartUpstream, leak_check, remote_settings, upstream

__all__ = ["leak_check", "upstream"]  # the fixtures, re-used

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "a private prompt"}]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Spans:
    """The finished spans of the app's requests."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def servers(self) -> list[ReadableSpan]:
        return [s for s in self._exporter.get_finished_spans() if s.kind is SpanKind.SERVER]

    def server(self) -> ReadableSpan:
        [server] = self.servers()
        return server

    def children(self, parent: ReadableSpan, name: str | None = None) -> list[ReadableSpan]:
        return [
            s
            for s in self._exporter.get_finished_spans()
            if s.parent is not None
            and s.parent.span_id == parent.context.span_id
            and name in (None, s.name)
        ]

    def clear(self) -> None:
        self._exporter.clear()


App = Callable[..., AbstractAsyncContextManager[tuple[httpx.AsyncClient, Spans]]]


@pytest.fixture
async def app(upstream: StartUpstream) -> AsyncIterator[App]:
    """``async with app(models, **settings) as (http, spans):`` -> a traced app serving
    ``models`` (remote_settings' shape) and its spans."""

    @asynccontextmanager
    async def open_app(
        models: list[dict[str, Any]], **settings: Any
    ) -> AsyncIterator[tuple[httpx.AsyncClient, Spans]]:
        config = remote_settings(models).model_copy(update=_sections(**settings))
        exporter = InMemorySpanExporter()
        tracing = Tracing(config.tracing, processor=SimpleSpanProcessor(exporter))
        async with AsyncExitStack() as stack:
            gateway = build_gateway(config, make_engine_factory(RuntimeConfig()))
            await stack.enter_async_context(no_leaks(gateway))
            served = await stack.enter_async_context(
                serve_in_process(config, gateway, tracing=tracing)
            )
            http = await stack.enter_async_context(asgi_client(served))
            yield http, Spans(exporter)

    yield open_app


def _sections(**sections: Any) -> dict[str, Any]:
    """Settings sections (``metrics={"enabled": False}``) as validated models."""
    return {name: type(getattr(Settings(), name))(**value) for name, value in sections.items()}


@pytest.fixture
async def ok(upstream: StartUpstream) -> tuple[FakeUpstream, str]:
    return await upstream("ok")


async def test_a_request_is_a_server_span_over_admission_cache_lookup_and_an_attempt(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    server_up, url = ok
    async with app([{"name": "m", "aliases": ["alias"], "deployments": [url]}]) as (http, spans):
        body = {"model": "alias", "messages": MESSAGES, "temperature": 0, "max_tokens": 9}
        response = await http.post(CHAT, json=body)
        assert response.status_code == 200
        server = spans.server()
        assert server.name == "chat alias"
        assert {s.name for s in spans.children(server)} == {"admission", "cache lookup", "attempt"}
        [lookup] = spans.children(server, "cache lookup")
        assert lookup.attributes is not None
        assert lookup.attributes["blaze.cache.status"] == "miss"
        [attempt] = spans.children(server, "attempt")
        [engine] = spans.children(attempt, "engine")
        assert engine.kind is SpanKind.CLIENT
        assert {s.context.trace_id for s in (lookup, attempt, engine)} == {server.context.trace_id}
        assert server_up.last_traceparent == (
            f"00-{engine.context.trace_id:032x}-{engine.context.span_id:016x}-"
            f"{engine.context.trace_flags:02x}"
        )
        attributes = dict(server.attributes or {})
        usage = response.json()["usage"]
        assert attributes == attributes | {
            "http.request.method": "POST",
            "http.route": CHAT,
            "http.response.status_code": 200,
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "blaze",
            "gen_ai.request.model": "alias",
            "gen_ai.response.model": "m",
            "gen_ai.request.max_tokens": 9,
            "gen_ai.request.temperature": 0.0,
            "gen_ai.usage.input_tokens": usage["prompt_tokens"],
            "gen_ai.usage.output_tokens": usage["completion_tokens"],
            "gen_ai.response.finish_reasons": ("stop",),
            "blaze.request.id": response.headers["x-request-id"],
        }
        assert "private" not in str([s.to_json() for s in (server, lookup, attempt, engine)])


async def test_a_retried_request_shows_two_attempts_the_first_failed(
    app: App, upstream: StartUpstream, ok: tuple[FakeUpstream, str]
) -> None:
    bad, url_bad = await upstream("bad")
    bad.behaviour = Behaviour(mode="fail", status=500)
    model = {
        "name": "r",
        "deployments": [url_bad, ok[1]],
        "strategy": "round_robin",
        "retry": {"num_retries": 1, "backoff_base_s": 0},
    }
    async with app([model]) as (http, spans):
        response = await http.post(CHAT, json={"model": "r", "messages": MESSAGES})
        assert response.status_code == 200
        server = spans.server()
        first, second = sorted(spans.children(server, "attempt"), key=lambda s: s.start_time or 0)
        assert first.attributes is not None and second.attributes is not None
        assert first.attributes["blaze.deployment.name"] == "r/0"
        assert first.attributes["blaze.attempt.number"] == 1
        assert first.attributes["blaze.attempt.outcome"] == "error"
        assert str(first.attributes["error.type"]).startswith("provider_")
        assert first.status.status_code is StatusCode.ERROR
        [failed_engine] = spans.children(first, "engine")
        assert failed_engine.status.status_code is StatusCode.ERROR
        assert second.attributes["blaze.deployment.name"] == "r/1"
        assert second.attributes["blaze.attempt.number"] == 2
        assert second.attributes["blaze.attempt.outcome"] == "success"
        assert second.status.status_code is StatusCode.UNSET
        assert server.status.status_code is StatusCode.UNSET


async def test_a_cache_hit_shows_the_lookup_and_no_attempt(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    async with app([{"name": "m", "deployments": [ok[1]]}]) as (http, spans):
        body = {"model": "m", "messages": MESSAGES, "temperature": 0}
        assert (await http.post(CHAT, json=body)).headers["x-blaze-cache"] == "miss"
        spans.clear()
        hit = await http.post(CHAT, json=body)
        assert hit.headers["x-blaze-cache"] == "hit-memory"
        server = spans.server()
        [lookup] = spans.children(server, "cache lookup")
        assert lookup.attributes is not None
        assert lookup.attributes["blaze.cache.status"] == "hit-memory"
        assert spans.children(server, "attempt") == []
        assert server.attributes is not None
        assert server.attributes["blaze.cache.hit"] is True
        prompt_tokens = hit.json()["usage"]["prompt_tokens"]
        assert server.attributes["gen_ai.usage.cache_read.input_tokens"] == prompt_tokens


async def test_a_streams_server_span_ends_after_its_last_chunk(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    server_up, url = ok
    server_up.behaviour = Behaviour(mode="trickle", content_chunks=4, delay_s=0.05)
    async with app([{"name": "m", "deployments": [url]}]) as (http, spans):
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        async with http.stream("POST", CHAT, json=body) as streamed:
            lines = [line async for line in streamed.aiter_lines() if line.startswith("data:")]
        assert lines[-1] == "data: [DONE]"
        server = spans.server()
        [attempt] = spans.children(server, "attempt")
        [engine] = spans.children(attempt, "engine")
        assert server.end_time is not None and server.start_time is not None
        assert engine.end_time is not None and attempt.end_time is not None
        assert engine.end_time <= attempt.end_time <= server.end_time
        assert server.end_time - server.start_time >= 3 * 0.05 * 1e9  # three gaps of 50 ms
        assert server.attributes is not None
        assert server.attributes["gen_ai.usage.output_tokens"] == 4
        assert server.attributes["gen_ai.response.finish_reasons"] == ("stop",)
        assert attempt.attributes is not None
        assert attempt.attributes["blaze.attempt.outcome"] == "success"
        assert server_up.last_traceparent is not None


async def test_an_incoming_traceparent_continues_its_trace_to_the_upstream(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    server_up, url = ok
    async with app([{"name": "m", "deployments": [url]}]) as (http, spans):
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
        response = await http.post(CHAT, json={"model": "m", "messages": MESSAGES}, headers=headers)
        assert response.status_code == 200
        server = spans.server()
        assert f"{server.context.trace_id:032x}" == TRACE_ID
        assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_ID
        assert server_up.last_traceparent is not None
        assert server_up.last_traceparent.split("-")[1] == TRACE_ID


async def test_an_invalid_request_is_a_span_with_its_error_type_and_no_children(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    async with app([{"name": "m", "deployments": [ok[1]]}]) as (http, spans):
        bad = await http.post(CHAT, json={"model": "m", "messages": MESSAGES, "temperature": 9})
        assert bad.status_code == 400
        server = spans.server()
        assert server.name == "chat m"
        assert server.attributes is not None
        assert server.attributes["error.type"] == "caller_invalid_request"
        assert server.attributes["http.response.status_code"] == 400
        assert server.status.status_code is StatusCode.UNSET
        assert spans.children(server) == []


async def test_an_unserved_request_is_an_error_span(app: App, upstream: StartUpstream) -> None:
    bad, url_bad = await upstream("bad")
    bad.behaviour = Behaviour(mode="fail", status=503)
    model = {"name": "down", "deployments": [url_bad], "retry": {"num_retries": 0}}
    async with app([model]) as (http, spans):
        failed = await http.post(CHAT, json={"model": "down", "messages": MESSAGES})
        assert failed.status_code == 503
        server = spans.server()
        assert server.status.status_code is StatusCode.ERROR
        assert server.attributes is not None
        assert server.attributes["error.type"] == "provider_unavailable"
        [attempt] = spans.children(server, "attempt")
        assert attempt.status.status_code is StatusCode.ERROR


async def test_a_list_of_prompts_is_one_server_span_with_an_attempt_per_prompt(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    async with app([{"name": "m", "deployments": [ok[1]]}]) as (http, spans):
        body = {"model": "m", "prompt": ["one", "two"], "max_tokens": 5}
        response = await http.post("/v1/completions", json=body)
        assert response.status_code == 200
        server = spans.server()
        assert server.name == "text_completion m"
        assert len(spans.children(server, "attempt")) == 2
        assert len(spans.children(server, "admission")) == 2
        assert server.attributes is not None
        assert server.attributes["gen_ai.usage.input_tokens"] == 2 * 5  # the fake's 5 each


async def test_tracing_with_metrics_off_still_records_but_sends_no_overhead_header(
    app: App, ok: tuple[FakeUpstream, str]
) -> None:
    models = [{"name": "m", "deployments": [ok[1]]}]
    async with app(models, metrics={"enabled": False}) as (http, spans):
        response = await http.post(CHAT, json={"model": "m", "messages": MESSAGES})
        assert response.status_code == 200
        assert "x-blaze-overhead-ms" not in response.headers
        assert (await http.get("/metrics")).status_code == 404
        assert spans.server().name == "chat m"


async def test_tracing_off_makes_no_trace_and_sends_no_traceparent(
    ok: tuple[FakeUpstream, str],
) -> None:
    server_up, url = ok
    settings = remote_settings([{"name": "m", "deployments": [url]}])
    gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
    async with no_leaks(gateway), serve_in_process(settings, gateway) as served:
        assert served.state.monitoring.tracing is None
        async with asgi_client(served) as http:
            response = await http.post(CHAT, json={"model": "m", "messages": MESSAGES})
        assert response.status_code == 200
    assert server_up.last_traceparent is None


async def test_the_otlp_exporter_delivers_the_spans_when_the_app_stops(
    ok: tuple[FakeUpstream, str],
) -> None:
    """The real path: ``tracing.otlp_endpoint`` -> batches over OTLP/HTTP (protobuf), flushed
    when the app stops."""
    with OtlpReceiver() as receiver:
        settings = remote_settings([{"name": "m", "deployments": [ok[1]]}]).model_copy(
            update=_sections(tracing={"otlp_endpoint": receiver.url, "service_name": "blz"})
        )
        gateway = build_gateway(settings, make_engine_factory(RuntimeConfig()))
        async with no_leaks(gateway), serve_in_process(settings, gateway) as served:
            async with asgi_client(served) as http:
                for _ in range(3):
                    response = await http.post(CHAT, json={"model": "m", "messages": MESSAGES})
                    assert response.status_code == 200
            started = time.monotonic()
        assert time.monotonic() - started < 5  # the flush did not wait for the batch delay
        servers = [s for s in receiver.spans if s.name == "chat m"]
        assert len(servers) == 3
        assert receiver.posts >= 1
        assert servers[0].resource["service.name"] == "blz"
        assert servers[0].kind == 2  # SPAN_KIND_SERVER
        engines = [s for s in receiver.spans if s.name == "engine"]
        assert {s.trace_id for s in engines} == {s.trace_id for s in servers}
        assert servers[0].attributes["gen_ai.usage.input_tokens"] == 5
