"""The pipeline cache: LRU within a memory budget, loads and evictions counted."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from blaze_ai.engines.diffusion.pipeline_cache import PipelineCache


def loader(name: str, calls: list[str]) -> Callable[[], str]:
    def load() -> str:
        calls.append(name)
        return f"pipeline {name}"

    return load


def size_of(_: object) -> int:
    return 10


def test_hit_after_load() -> None:
    cache, calls = PipelineCache(100), []
    assert cache.get("a", loader("a", calls), size_of) == "pipeline a"
    assert cache.get("a", loader("a", calls), size_of) == "pipeline a"
    stats = cache.stats()
    assert calls == ["a"] and (stats.loads, stats.hits, stats.cached_bytes) == (1, 1, 10)


def test_least_recently_used_goes_first_when_over_budget(caplog: pytest.LogCaptureFixture) -> None:
    cache, calls = PipelineCache(25), []
    cache.get("a", loader("a", calls), size_of)
    cache.get("b", loader("b", calls), size_of)
    cache.get("a", loader("a", calls), size_of)  # a is now the most recently used
    caplog.set_level("INFO", logger="blaze_ai.engines.diffusion.pipeline_cache")
    cache.get("c", loader("c", calls), size_of)
    assert cache.stats().keys == ("a", "c")
    assert cache.stats().evictions == 1
    evicted = [r for r in caplog.records if r.getMessage() == "pipeline_evicted"]
    assert [r.__dict__["key"] for r in evicted] == ["b"]
    loaded = [r for r in caplog.records if r.getMessage() == "pipeline_loaded"]
    assert loaded and "load_s" in loaded[0].__dict__
    cache.get("b", loader("b", calls), size_of)  # loaded again on demand
    assert calls == ["a", "b", "c", "b"]


def test_the_newest_stays_even_alone_over_budget() -> None:
    cache, calls = PipelineCache(5), []
    cache.get("a", loader("a", calls), size_of)
    cache.get("b", loader("b", calls), size_of)
    assert cache.stats().keys == ("b",)


def test_a_failed_load_caches_nothing() -> None:
    cache = PipelineCache(100)

    def broken() -> str:
        raise OSError("no such folder")

    with pytest.raises(OSError):
        cache.get("a", broken, size_of)
    assert cache.stats().keys == ()


def test_one_load_per_key_under_concurrency() -> None:
    cache, calls = PipelineCache(100), []

    def slow() -> str:
        time.sleep(0.05)
        calls.append("a")
        return "pipeline a"

    threads = [threading.Thread(target=cache.get, args=("a", slow, size_of)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["a"]


def test_drop_forgets() -> None:
    cache, calls = PipelineCache(100), []
    cache.get("a", loader("a", calls), size_of)
    cache.drop("a")
    assert cache.stats().keys == ()
