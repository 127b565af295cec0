"""Contract tests of /v1/chat/completions through the app in this process, with the official
openai client."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.api.sse import sse_exchange

MESSAGES = [{"role": "user", "content": "Hello world"}]
LIVE = {"Cache-Control": "no-cache, no-store"}


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": MESSAGES, "temperature": 0, **fields}


@pytest.fixture(params=["live", "replay"])
def source(request: pytest.FixtureRequest) -> str:
    """Each stream contract test runs on a live stream and on a cache hit replayed."""
    return str(request.param)


async def stream_events(http: httpx.AsyncClient, body: dict[str, Any], source: str) -> list[Any]:
    """The events of streaming ``body``, live (cache bypassed) or replayed from the cache
    (after the same request, not streamed, stored the answer)."""
    if source == "live":
        headers, events = await sse_exchange(http, "/v1/chat/completions", body, LIVE)
        assert headers["x-blaze-cache"] == "bypass"
        return events
    whole = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    assert (await http.post("/v1/chat/completions", json=whole)).status_code == 200
    headers, events = await sse_exchange(http, "/v1/chat/completions", body)
    assert headers["x-blaze-cache"] == "hit-memory"
    return events


async def test_openai_client_gets_a_completion(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        temperature=0,
        max_tokens=5,  # type: ignore[arg-type]
    )
    assert response.id.startswith("chatcmpl-")
    assert response.object == "chat.completion"
    assert response.model == "tiny"
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "length"
    assert response.usage is not None
    assert response.usage.completion_tokens == 5
    assert response.usage.total_tokens == response.usage.prompt_tokens + 5


async def test_alias_resolves(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="default",
        messages=MESSAGES,
        temperature=0,
        max_tokens=2,  # type: ignore[arg-type]
    )
    assert response.usage is not None and response.usage.completion_tokens == 2


async def test_max_completion_tokens_wins_over_max_tokens(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions", json=chat_body(max_tokens=12, max_completion_tokens=3)
    )
    assert response.json()["usage"]["completion_tokens"] == 3
    body = (await http.post("/v1/chat/completions", json=chat_body(max_tokens=4))).json()
    assert body["usage"]["completion_tokens"] == 4


async def test_a_number_without_fraction_is_an_integer(http: httpx.AsyncClient) -> None:
    """JSON Schema (and so the document) counts ``2.0`` as an integer (found by schemathesis:
    ``"seed": 3600.0`` was refused)."""
    body = chat_body(max_tokens=3.0, n=2.0, seed=3600.0, temperature=0)
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["choices"]) == 2
    assert response.json()["usage"]["completion_tokens"] == 6


async def test_stop_sequence_is_cut_with_finish_reason_stop(http: httpx.AsyncClient) -> None:
    full = (await http.post("/v1/chat/completions", json=chat_body(max_tokens=30))).json()
    text = full["choices"][0]["message"]["content"]
    stop = text[8:12]
    for value in (stop, [stop, "never-matches"]):
        response = await http.post(
            "/v1/chat/completions", json=chat_body(max_tokens=30, stop=value)
        )
        cut = response.json()
        assert cut["choices"][0]["finish_reason"] == "stop"
        assert cut["choices"][0]["message"]["content"] == text[: text.index(stop)]


async def test_n_2_gives_indexes_0_and_1(client: openai.AsyncOpenAI) -> None:
    response = await client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        n=2,
        max_tokens=4,
        seed=7,  # type: ignore[arg-type]
    )
    assert [c.index for c in response.choices] == [0, 1]
    assert response.usage is not None and response.usage.completion_tokens == 8


async def test_stream_contract_with_usage(http: httpx.AsyncClient, source: str) -> None:
    events = await stream_events(
        http, chat_body(max_tokens=6, stream=True, stream_options={"include_usage": True}), source
    )
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1
    assert len({c["created"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    choice_chunks = chunks[:-1]
    assert all(c["usage"] is None for c in choice_chunks)
    reasons = [c["choices"][0]["finish_reason"] for c in choice_chunks]
    assert reasons[-1] == "length"
    assert all(r is None for r in reasons[:-1])


async def test_stream_without_usage_has_no_usage_field(
    http: httpx.AsyncClient, source: str
) -> None:
    events = await stream_events(http, chat_body(max_tokens=4, stream=True), source)
    assert events[-1] == "[DONE]"
    assert all("usage" not in c for c in events[:-1])
    assert all(c["choices"] for c in events[:-1])


async def test_streamed_text_equals_non_streamed(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        temperature=0,
        max_tokens=25,  # type: ignore[arg-type]
    )
    stream = await client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        temperature=0,
        max_tokens=25,
        stream=True,  # type: ignore[arg-type]
        extra_headers=LIVE,
    )
    text = "".join(
        [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
    )
    assert text == whole.choices[0].message.content


async def test_stream_n_2_each_choice_has_role_then_finish(
    http: httpx.AsyncClient, source: str
) -> None:
    events = await stream_events(http, chat_body(max_tokens=3, n=2, stream=True), source)
    chunks = events[:-1]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert mine[-1]["finish_reason"] == "length"
        assert all(m["finish_reason"] is None for m in mine[:-1])


async def test_unknown_fields_are_ignored(http: httpx.AsyncClient) -> None:
    body = chat_body(
        max_tokens=2, some_future_field={"x": 1}, tools=[], response_format={"type": "text"}
    )
    response = await http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200


async def test_content_parts_and_developer_role(http: httpx.AsyncClient) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}],
        },
    ]
    response = await http.post(
        "/v1/chat/completions", json=chat_body(messages=messages, max_tokens=2)
    )
    assert response.status_code == 200


async def test_request_id_is_returned_and_honoured(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json=chat_body(max_tokens=1))
    assert len(response.headers["x-request-id"]) >= 16
    response = await http.post(
        "/v1/chat/completions", json=chat_body(max_tokens=1), headers={"X-Request-ID": "trace-123"}
    )
    assert response.headers["x-request-id"] == "trace-123"


@pytest.mark.parametrize("path", ["/health", "/ready"])
async def test_health_and_ready(http: httpx.AsyncClient, path: str) -> None:
    assert (await http.get(path)).status_code == 200
