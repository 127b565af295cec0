"""Metric names, types and labels pinned by a golden file; deprecated aliases; the error types'
closed set; what one request record adds."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from blaze_ai import errors
from blaze_ai.observability.metrics import METRICS, Metrics
from blaze_ai.observability.request import RequestRecord
from blaze_ai.observability.samples import (
    CacheLevelSample,
    DeploymentSample,
    GatewaySample,
    ModelSample,
)
from blaze_ai.types import TextChunk, Usage

GOLDEN = Path(__file__).with_name("metrics.golden")


def golden() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, label names) of the golden file."""
    out = {}
    for line in GOLDEN.read_text().splitlines():
        if line and not line.startswith("#"):
            name, kind, labels = line.split()
            out[name] = (kind, frozenset() if labels == "-" else frozenset(labels.split(",")))
    return out


def deployment(name: str, *, images: bool = False) -> DeploymentSample:
    return DeploymentSample(
        model=name.split("/")[0],
        deployment=name,
        images=images,
        engine_state="ready",
        healthy=True,
        breaker_state="open",
        in_flight=1,
        queue_depth=2,
        batch_size=3,
        outcomes={"success": 5, "failure": 1, "rejected": 0, "cancelled": 0},
        breaker_transitions={"open": 1},
        restarts=1,
        prefill_tokens=40,
        prefix_cache_hit_tokens=16,
        prefix_cache_bytes=4096,
        backpressure_rejections=1,
    )


def busy_metrics(metrics: Metrics) -> None:
    """Feed ``metrics`` so that every metric has a sample."""
    metrics.update(
        GatewaySample(
            deployments=(deployment("chat/0"), deployment("digits/0", images=True)),
            models=(ModelSample("chat", retries=1, fallbacks=1, admission_rejections=0),),
            cache_levels=(CacheLevelSample("memory", 1, 2, 300, 0),),
            pending=1,
        )
    )
    metrics.deployment_latency("chat", "chat/0")(0.2)
    streamed = RequestRecord("/v1/chat/completions", started=0.0)
    streamed.model, streamed.team = "chat", "research"
    for at in (0.1, 0.2, 0.3):
        streamed.saw(TextChunk(0, "x"), now=at)
    streamed.usage = Usage(10, 3, cached_tokens=4)
    metrics.observe_request(streamed, 200, 0.4)
    images = RequestRecord("/v1/images/generations", started=0.0)
    images.model, images.images = "digits", 2
    metrics.observe_request(images, 200, 1.0)
    limited = RequestRecord("/v1/chat/completions", started=0.0)
    limited.model, limited.team = "chat", "research"
    limited.fail(errors.RateLimitError("over", limit="rpm"))
    metrics.observe_request(limited, 429, 0.01)


def exposed(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """name (counters with ``_total``) -> (type, label names) of every blaze_* family."""
    out = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("blaze_"):
            continue
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = frozenset(k for s in family.samples for k in s.labels if k != "le")
        out[name] = (family.type, labels)
    return out


def test_the_declared_metrics_are_the_golden_ones() -> None:
    declared = {spec.name: (spec.type, frozenset(spec.labels)) for spec in METRICS}
    assert declared == golden()
    assert len(declared) == len(METRICS), "a metric is declared twice"


def test_the_exposed_metrics_are_exactly_the_golden_ones() -> None:
    metrics = Metrics()
    busy_metrics(metrics)
    assert exposed(metrics.exposition().decode()) == golden()


def test_names_follow_prometheus_conventions() -> None:
    for spec in METRICS:
        assert spec.name.startswith("blaze_")
        assert spec.name.endswith("_total") == (spec.type == "counter"), spec.name
        assert not {"request_id", "key", "key_id", "prompt", "user"} & set(spec.labels)


def test_a_renamed_metric_keeps_its_old_name_as_a_deprecated_alias() -> None:
    metrics = Metrics(aliases={"blaze_model_requests_total": "blaze_requests_total"})
    busy_metrics(metrics)
    families = {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}
    old, new = families["blaze_model_requests"], families["blaze_requests"]
    assert old.documentation.startswith("Deprecated: use blaze_requests_total.")
    assert [(s.labels, s.value) for s in old.samples] == [(s.labels, s.value) for s in new.samples]
    assert {s.name for s in old.samples} == {"blaze_model_requests_total"}


def test_error_types_are_a_closed_set_by_fault_domain() -> None:
    classes = [
        c
        for _, c in inspect.getmembers(errors, inspect.isclass)
        if issubclass(c, errors.BlazeError)
    ]
    for cls in classes:
        assert cls.fault in ("caller", "policy", "provider", "blaze"), cls
        assert cls.metric_error_type.startswith(cls.fault + "_"), cls
    assert errors.RateLimitError.fault == "policy"
    assert errors.AuthenticationError.fault == "policy"
    assert errors.InvalidRequestError.fault == "caller"
    assert errors.UpstreamRateLimitError.fault == "provider"
    assert errors.EngineTimeoutError.fault == "provider"


def test_a_stream_record_counts_its_first_token_and_mean_gap() -> None:
    record = RequestRecord("/v1/chat/completions", started=10.0)
    record.model = "chat"
    for text, at in (("a", 10.5), ("", 10.7), ("b", 11.0), ("c", 11.5)):
        record.saw(TextChunk(0, text), now=at)
    record.saw(Usage(5, 3))
    assert record.chunks == 3 and record.usage == Usage(5, 3)
    assert (record.first_chunk_at, record.last_chunk_at) == (10.5, 11.5)
    assert record.time_to_first_chunk_s() == 0.5
    assert record.inter_chunk_s() == 0.5
    record.cache_hit = True
    assert record.time_to_first_chunk_s() is None and record.inter_chunk_s() is None


def test_the_mean_gap_is_per_choice_when_choices_interleave() -> None:
    """Review of issue 13: with ``n=4`` the chunks of four choices interleave, 0.1 s apart,
    while each choice gets a token every 0.4 s; the metric read 0.1 s (a quarter)."""
    record = RequestRecord("/v1/chat/completions", started=0.0)
    at = 1.0
    for _ in range(5):
        for choice in range(4):
            record.saw(TextChunk(choice, "t"), now=at)
            at += 0.1
    assert record.inter_chunk_s() == pytest.approx(0.4)


def test_the_mean_gap_leaves_out_the_wait_between_the_prompts_of_a_list() -> None:
    """Review of issue 13: a streamed list of prompts is one stream per prompt, one after the
    other; the second prompt's time to its first token is not a gap between two tokens."""
    record = RequestRecord("/v1/completions", started=0.0)
    record.stream_started()
    for at in (1.0, 1.1, 1.2):
        record.saw(TextChunk(0, "t"), now=at)
    record.stream_started()
    for at in (5.0, 5.1, 5.2):
        record.saw(TextChunk(0, "t"), now=at)
    assert record.inter_chunk_s() == pytest.approx(0.1)
    assert record.time_to_first_chunk_s() == 1.0


def test_engine_time_counts_the_running_attempt_and_overhead_the_rest() -> None:
    record = RequestRecord("/v1/completions", started=0.0)
    record.engine_started(1.0)
    record.engine_ended(3.0)
    record.engine_started(4.0)
    assert record.engine_time_s(5.0) == 3.0
    assert record.overhead_s(5.0) == 2.0
    record.engine_ended(6.0)
    assert record.engine_s == 4.0 and record.overhead_s(7.0) == 3.0


def test_an_http_status_without_an_error_is_counted_by_its_class() -> None:
    metrics = Metrics()
    for status in (200, 404, 499, 500):
        record = RequestRecord("/v1/completions", started=0.0)
        record.model = "m"
        metrics.observe_request(record, status, 0.1)
    text = metrics.exposition().decode()
    assert (
        'blaze_requests_total{endpoint="/v1/completions",model="m",outcome="cancelled"} 1.0' in text
    )
    assert 'blaze_errors_total{error_type="caller_invalid_request",model="m"} 1.0' in text
    assert 'blaze_errors_total{error_type="blaze_internal",model="m"} 1.0' in text


def test_the_readme_lists_every_metric() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    missing = [spec.name for spec in METRICS if f"`{spec.name}`" not in readme]
    assert not missing, f"add to README's Monitoring table: {missing}"


def test_overlapping_attempts_count_their_union_as_engine_time() -> None:
    """The prompts of one completion request run at once: 1-4 and 2-3 and 5-6 are 4 s."""
    record = RequestRecord("/v1/completions", started=0.0)
    record.engine_started(1.0)
    record.engine_started(2.0)
    record.engine_ended(3.0)
    assert record.engine_time_s(3.5) == 2.5
    record.engine_ended(4.0)
    record.engine_started(5.0)
    record.engine_ended(6.0)
    assert record.engine_s == 4.0


def test_no_created_series_is_exposed_and_the_switch_stays_process_wide_default() -> None:
    """Review of issue 13: ``disable_created_metrics()`` is process-wide; the exposition drops
    the ``*_created`` samples itself instead."""
    metrics = Metrics()
    busy_metrics(metrics)
    assert "_created" not in metrics.exposition().decode()
    assert not [s for f in metrics.families() for s in f.samples if s.name.endswith("_created")]
    names = {s.name for f in metrics.registry.collect() for s in f.samples}
    assert "blaze_requests_created" in names  # the library's default is left alone
