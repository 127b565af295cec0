"""End to end, issue 11: one request cannot deny service to the others. The embedded model
(``max_batch_size: 16``, so 8 sequences of one request at once) and the real server."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from blaze_ai.devtools.server import BlazeServer

STORY = [{"role": "user", "content": "Write a very long story about a dragon."}]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
NO_CACHE = {"Cache-Control": "no-cache, no-store"}


@pytest.fixture
def http(embedded_server: BlazeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=embedded_server.base_url, timeout=120, headers=NO_CACHE) as client:
        yield client


def smollm2(http: httpx.Client) -> dict[str, Any]:
    data = http.get("/admin/deployments").json()["data"]
    return dict(next(d for d in data if d["model"] == "smollm2"))


def short_request_s(http: httpx.Client) -> float:
    body = {"model": "smollm2", "messages": QUESTION, "max_tokens": 8, "temperature": 0}
    started = time.perf_counter()
    answer = http.post("/v1/chat/completions", json=body)
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - started


def test_n_128_with_max_tokens_4096_is_refused_naming_max_tokens(http: httpx.Client) -> None:
    body = {"model": "smollm2", "messages": STORY, "n": 128, "max_tokens": 4096}
    answer = http.post("/v1/chat/completions", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "max_tokens" and "128 × 4096" in error["message"]


def test_the_batch_never_holds_more_than_16_sequences(http: httpx.Client) -> None:
    bodies = [
        {"model": "smollm2", "messages": STORY, "n": n, "max_tokens": 6, "temperature": 0.9}
        for n in (32, 8, 8, 8)
    ]
    results: list[httpx.Response] = []
    threads = [
        threading.Thread(
            target=lambda b=b: results.append(http.post("/v1/chat/completions", json=b))
        )
        for b in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
    assert sorted(len(r.json()["choices"]) for r in results) == [8, 8, 8, 32]
    peak = smollm2(http)["peak_batch_size"]
    assert 8 <= peak <= 16, peak


def test_a_short_request_answers_within_3x_its_time_alone_while_a_big_one_runs(
    http: httpx.Client, embedded_server: BlazeServer
) -> None:
    alone = statistics.median(short_request_s(http) for _ in range(3))
    big = {
        "model": "smollm2",
        "messages": STORY,
        "n": 64,
        "max_tokens": 1024,  # 65536 tokens: the largest the default cap allows
        "temperature": 0.9,
        "stream": True,
    }
    stop = threading.Event()
    streamed = threading.Event()

    def run_big() -> None:
        with (
            httpx.Client(base_url=embedded_server.base_url, timeout=120) as client,
            client.stream("POST", "/v1/chat/completions", json=big) as response,
        ):
            for _ in response.iter_lines():
                streamed.set()
                if stop.is_set():
                    return  # closing the stream cancels the request

    worker = threading.Thread(target=run_big)
    worker.start()
    try:
        assert streamed.wait(60), "the big request never streamed"
        loaded = [short_request_s(http) for _ in range(3)]
        batch = smollm2(http)["batch_size"]
    finally:
        stop.set()
        worker.join()
    assert batch <= 16
    print(f"short request alone {alone:.3f} s, while a big one runs {loaded}")
    assert statistics.median(loaded) < 3 * alone, (alone, loaded)
    assert smollm2(http)["peak_batch_size"] <= 16


def largest_side(n: int, steps: int, max_pixel_steps: int, multiple: int = 8) -> int:
    """The largest square side (a multiple of ``multiple``) ``n`` images of ``steps`` steps
    may have under ``max_pixel_steps``."""
    side = int((max_pixel_steps / (n * steps)) ** 0.5)
    return side - side % multiple


def image_request_s(http: httpx.Client, side: int, n: int = 1) -> float:
    body = {"model": "digits", "prompt": "a 3", "n": n, "size": f"{side}x{side}"}
    started = time.perf_counter()
    answer = http.post("/v1/images/generations", json=body)
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["data"]) == n
    return time.perf_counter() - started


def test_images_n_10_at_the_largest_size_take_turns_with_a_small_request(
    http: httpx.Client,
) -> None:
    from blaze_ai.config.deployments import MAX_REQUEST_PIXEL_STEPS

    side = largest_side(10, 25, MAX_REQUEST_PIXEL_STEPS)  # the digits model: 25 steps
    over = {"model": "digits", "prompt": "a 3", "n": 10, "size": f"{side + 8}x{side + 8}"}
    refused = http.post("/v1/images/generations", json=over)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "size"
    alone = statistics.median(image_request_s(http, side) for _ in range(3))
    results: list[float] = []
    big = threading.Thread(target=lambda: results.append(image_request_s(http, side, n=10)))
    big.start()
    time.sleep(0.05)
    loaded = [image_request_s(http, side) for _ in range(3)]
    big.join()
    print(f"image alone {alone:.3f} s, while n=10 runs {loaded}, the n=10 took {results}")
    assert statistics.median(loaded) < 3 * alone, (alone, loaded)
    digits = next(
        d for d in http.get("/admin/deployments").json()["data"] if d["model"] == "digits"
    )
    assert digits["peak_batch_size"] <= 8
