"""Contract tests of /v1/completions and /v1/models, through the app in this process."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.api.sse import sse_payloads


async def test_completion_with_openai_client(client: openai.AsyncOpenAI) -> None:
    response = await client.completions.create(
        model="tiny", prompt="The capital", max_tokens=5, temperature=0
    )
    assert response.object == "text_completion"
    assert response.choices[0].finish_reason == "length"
    assert response.usage is not None and response.usage.completion_tokens == 5


async def test_completion_default_max_tokens_is_16(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/completions", json={"model": "tiny", "prompt": "Hi", "temperature": 0}
    )
    assert response.json()["usage"]["completion_tokens"] == 16


async def test_list_of_prompts_times_n(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": ["Hello", "The fox"], "n": 2, "max_tokens": 3, "seed": 1},
    )
    body = response.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert body["usage"]["completion_tokens"] == 12


async def test_echo_prepends_prompt(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/completions",
        json={"model": "tiny", "prompt": "Hello", "max_tokens": 3, "echo": True, "temperature": 0},
    )
    assert response.json()["choices"][0]["text"].startswith("Hello")


async def test_streamed_completion_equals_non_streamed(http: httpx.AsyncClient) -> None:
    request = {"model": "tiny", "prompt": ["Hello", "The fox"], "max_tokens": 8, "temperature": 0}
    live = {"Cache-Control": "no-cache, no-store"}  # compare two live generations
    whole = (await http.post("/v1/completions", json=request, headers=live)).json()
    events = await sse_payloads(
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


async def test_models_list_and_retrieve(client: openai.AsyncOpenAI) -> None:
    ids = [m.id async for m in client.models.list()]
    assert ids == ["tiny", "digits"]  # image models are listed too
    assert (await client.models.retrieve("tiny")).id == "tiny"
    assert (await client.models.retrieve("default")).id == "tiny"
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("nope")
    assert info.value.code == "model_not_found"


async def test_unknown_model_is_404_model_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(
            model="gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.code == "model_not_found"
    assert info.value.body["param"] == "model"  # type: ignore[index]
