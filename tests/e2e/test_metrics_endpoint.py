"""Issue 13 on a real ``blaze serve``: the official client's answers carry the overhead header
and ``/metrics`` counts them."""

from __future__ import annotations

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families


def requests_total(http: httpx.Client, model: str) -> float:
    text = http.get("/metrics").text
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "blaze_requests"
        for s in f.samples
        if s.labels["model"] == model and s.labels["outcome"] == "success"
    )


def test_the_openai_clients_answers_are_counted_with_their_overhead(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    before = requests_total(http, "tiny")
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert 0 <= float(raw.headers["x-blaze-overhead-ms"]) < 1000
    assert raw.parse().choices[0].message.content is not None
    assert requests_total(http, "tiny") == before + 1  # counted under the canonical name
    text = http.get("/metrics").text
    assert "process_cpu_seconds_total" in text and "blaze_engine_state" in text
