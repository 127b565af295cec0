"""Contract tests of /v1/completions and /v1/models over real HTTP."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.sse import sse_payloads


def test_completion_with_openai_client(client: openai.OpenAI) -> None:
    response = client.completions.create(
        model="tiny", prompt="The capital", max_tokens=5, temperature=0
    )
    assert response.object == "text_completion"
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 5


def test_completion_default_max_tokens_is_16(http: httpx.Client) -> None:
    body = http.post(
        "/v1/completions", json={"model": "tiny", "prompt": "Hi", "temperature": 0}
    ).json()
    assert body["usage"]["completion_tokens"] == 16


def test_list_of_prompts_times_n(http: httpx.Client) -> None:
    body = http.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": ["Hello", "The fox"], "n": 2, "max_tokens": 3, "seed": 1},
    ).json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["completion_tokens"] == 12


def test_echo_prepends_prompt(http: httpx.Client) -> None:
    body = http.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": "Hello", "max_tokens": 3, "echo": True, "temperature": 0},
    ).json()
    assert body["choices"][0]["text"].startswith("Hello")


def test_streamed_completion_equals_non_streamed(http: httpx.Client) -> None:
    request = {"model": "tiny", "prompt": ["Hello", "The fox"], "max_tokens": 8, "temperature": 0}
    live = {"Cache-Control": "no-cache, no-store"}  # compare two live generations
    whole = http.post("/v1/completions", json=request, headers=live).json()
    events = sse_payloads(
        http,
        "/v1/completions",
        {**request, "stream": True, "stream_options": {"include_usage": True}},
        headers=live,
    )
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"] == whole["usage"]
    texts: dict[int, str] = {}
    for event in events[:-2]:
        assert event["object"] == "text_completion"
        for choice in event["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["text"]
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["tiny", "digits"]  # image models are listed too
    assert client.models.retrieve("tiny").id == "tiny"
    assert client.models.retrieve("default").id == "tiny"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("nope")
    assert info.value.code == "model_not_found"


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "model_not_found"
    assert info.value.body["param"] == "model"  # type: ignore[index]
