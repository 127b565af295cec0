"""Issue 13 (traces) end to end: a real ``blaze serve`` told by ``BLAZE_TRACING__OTLP_ENDPOINT``
to trace, in front of a fake upstream process, exporting to an OTLP/HTTP receiver on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from blaze_ai.devtools.forked import launch_forked_server
from blaze_ai.devtools.server import BlazeServer
from tests.e2e.servers import READY_TIMEOUT_S
from tests.e2e.upstreams import Upstream, launch_upstream, wait_until_up
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[tuple[BlazeServer, OtlpReceiver]]:
    upstream: Upstream = launch_upstream("a")
    with OtlpReceiver() as receiver:
        config = tmp_path / "blaze.yaml"
        config.write_text(
            "models:\n"
            "  - name: m\n"
            f"    deployments: [{{engine: remote, base_url: '{upstream.url}/v1', model: fake}}]\n"
        )
        wait_until_up(upstream)
        env = {"BLAZE_TRACING__OTLP_ENDPOINT": receiver.url}
        server = launch_forked_server(tmp_path / "server.log", config=config, env=env)
        try:
            yield server.wait_ready(READY_TIMEOUT_S), receiver
        finally:
            server.stop()
            upstream.stop()


def test_blaze_serve_exports_the_traces_of_its_requests(
    traced: tuple[BlazeServer, OtlpReceiver],
) -> None:
    server, receiver = traced
    headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        cacheable = {**BODY, "temperature": 0}  # looked up in the cache (a miss)
        assert http.post("/v1/chat/completions", json=cacheable, headers=headers).status_code == 200
        with http.stream("POST", "/v1/chat/completions", json={**BODY, "stream": True}) as s:
            assert s.status_code == 200
            assert list(s.iter_lines())[-2:] == ["data: [DONE]", ""]
    server.stop()  # SIGTERM: the app stops and flushes its spans
    servers = [s for s in receiver.spans if s.name == "chat m"]
    assert len(servers) == 2, server.log()
    parented = _one(s for s in servers if s.trace_id == TRACE_ID)
    assert parented.parent_span_id == PARENT_ID
    assert parented.resource["service.name"] == "blaze"
    assert parented.attributes["gen_ai.usage.output_tokens"] == 7  # the fake's answer
    names = {s.name for s in receiver.spans if s.trace_id == TRACE_ID}
    assert names == {"chat m", "admission", "cache lookup", "attempt", "engine"}


def _one(spans: Iterator[ReceivedSpan]) -> ReceivedSpan:
    [span] = list(spans)
    return span
