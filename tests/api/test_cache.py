"""The response cache over HTTP, through the tiny-model app in this process (default config:
memory only)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.api.sse import sse_exchange
from tests.unit.cache.variants import BASE, VARIANTS

CHAT = "/v1/chat/completions"
REFUSED_BY_THE_TINY_ENGINE = {"logprobs", "top_logprobs", "tools", "response_format", "logit_bias"}


def fresh(**fields: Any) -> dict[str, Any]:
    """A cacheable chat body no other test sends."""
    content = f"cache test {uuid.uuid4().hex[:8]}"
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], **BASE, **fields}


async def post(http: httpx.AsyncClient, body: dict[str, Any], **kw: Any) -> httpx.Response:
    response = await http.post(CHAT, json=body, **kw)
    assert response.status_code == 200, response.text
    return response


async def test_same_request_twice_is_a_miss_then_a_hit(http: httpx.AsyncClient) -> None:
    body = fresh()
    first, second = await post(http, body), await post(http, body)
    assert first.headers["x-blaze-cache"] == "miss"
    assert second.headers["x-blaze-cache"] == "hit-memory"
    a, b = first.json(), second.json()
    assert a["choices"] == b["choices"]
    assert a["id"] != b["id"]
    # a miss: at most the shared start of the prompt came from the engine's prefix cache
    assert a["usage"]["prompt_tokens_details"]["cached_tokens"] < a["usage"]["prompt_tokens"]
    usage = b["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] > 0
    assert {k: usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")} == {
        k: a["usage"][k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


async def test_alias_shares_the_entry(http: httpx.AsyncClient) -> None:
    body = fresh()
    await post(http, body)
    assert (await post(http, {**body, "model": "default"})).headers["x-blaze-cache"] == "hit-memory"


@pytest.mark.parametrize(("name", "a", "b"), VARIANTS, ids=[v[0] for v in VARIANTS])
async def test_requests_differing_in_one_parameter_are_two_misses(
    http: httpx.AsyncClient, name: str, a: dict[str, Any], b: dict[str, Any]
) -> None:
    body = fresh()
    if REFUSED_BY_THE_TINY_ENGINE & {*a, *b}:  # a 400, and a 400 is never answered from the cache
        for side in (a, b):
            if REFUSED_BY_THE_TINY_ENGINE & set(side):
                refused = await http.post(CHAT, json={**body, **side})
                assert refused.status_code == 400 and "x-blaze-cache" not in refused.headers
        return
    first = await post(http, {**body, **a})
    second = await http.post(CHAT, json={**body, **b})
    assert first.headers["x-blaze-cache"] == "miss"
    assert second.status_code == 200, second.text
    assert second.headers["x-blaze-cache"] == "miss"
    assert (await post(http, {**body, **a})).headers["x-blaze-cache"] == "hit-memory"
    assert (await post(http, {**body, **b})).headers["x-blaze-cache"] == "hit-memory"


async def test_request_without_temperature_is_not_cached(http: httpx.AsyncClient) -> None:
    body = fresh()
    del body["temperature"], body["seed"]
    assert [(await post(http, body)).headers["x-blaze-cache"] for _ in range(2)] == [
        "bypass",
        "bypass",
    ]


async def test_hit_is_served_identically_streamed_and_not(http: httpx.AsyncClient) -> None:
    body = fresh(max_tokens=12, n=2)
    whole = (await post(http, body)).json()
    headers, events = await sse_exchange(
        http, CHAT, {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert headers["x-blaze-cache"] == "hit-memory"
    assert events[-1] == "[DONE]"
    texts: dict[int, str] = {}
    reasons: dict[int, str] = {}
    for event in events[:-2]:
        for choice in event["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + choice["delta"].get(
                "content", ""
            )
            if choice["finish_reason"]:
                reasons[choice["index"]] = choice["finish_reason"]
    assert texts == {c["index"]: c["message"]["content"] for c in whole["choices"]}
    assert reasons == {c["index"]: c["finish_reason"] for c in whole["choices"]}
    usage = events[-2]["usage"]
    assert usage["completion_tokens"] == whole["usage"]["completion_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]


async def test_completed_stream_populates_the_cache(http: httpx.AsyncClient) -> None:
    body = fresh(max_tokens=6)
    headers, events = await sse_exchange(http, CHAT, {**body, "stream": True})
    assert headers["x-blaze-cache"] == "miss"
    streamed = "".join(
        e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"]
    )
    hit = await post(http, body)
    assert hit.headers["x-blaze-cache"] == "hit-memory"
    assert hit.json()["choices"][0]["message"]["content"] == streamed


async def test_openai_client_sees_cached_tokens(client: openai.AsyncOpenAI) -> None:
    body = fresh()
    for _ in range(2):
        response = await client.chat.completions.with_raw_response.create(
            model="tiny",
            messages=body["messages"],
            temperature=0,
            max_tokens=3,  # type: ignore[arg-type]
        )
    assert response.headers["x-blaze-cache"] == "hit-memory"
    completion = response.parse()
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == completion.usage.prompt_tokens


async def test_per_request_controls_in_body_and_headers(http: httpx.AsyncClient) -> None:
    body = fresh()
    no_store = {**body, "cache": {"no-store": True}}
    assert (await post(http, no_store)).headers["x-blaze-cache"] == "miss"
    assert (await post(http, body)).headers["x-blaze-cache"] == "miss"  # the first was not stored
    assert (await post(http, body)).headers["x-blaze-cache"] == "hit-memory"
    no_cache = await post(http, {**body, "cache": {"no-cache": True}})
    assert no_cache.headers["x-blaze-cache"] == "bypass"
    skip = await post(http, body, headers={"Cache-Control": "no-cache"})
    assert skip.headers["x-blaze-cache"] == "bypass"
    ttl = await post(http, fresh(), headers={"X-Blaze-Cache-TTL": "30"})
    assert ttl.headers["x-blaze-cache"] == "miss"


@pytest.mark.parametrize(
    ("fields", "headers", "param"),
    [
        ({"cache": {"ttl": -1}}, {}, "cache.ttl"),
        ({"cache": {"ttl": "10"}}, {}, "cache.ttl"),
        ({"cache": {"no-cahce": True}}, {}, "cache.no-cahce"),
        ({"cache": "no-cache"}, {}, "cache"),
        ({}, {"X-Blaze-Cache-TTL": "soon"}, "X-Blaze-Cache-TTL"),
        ({}, {"X-Blaze-Cache-TTL": "0"}, "X-Blaze-Cache-TTL"),
    ],
)
async def test_bad_cache_controls_are_400(
    http: httpx.AsyncClient, fields: dict[str, Any], headers: dict[str, str], param: str
) -> None:
    response = await http.post(CHAT, json=fresh(**fields), headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


async def test_completions_with_several_prompts(http: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    one = {"model": "tiny", "prompt": f"one {tag}", "max_tokens": 3, "temperature": 0}
    assert (await http.post("/v1/completions", json=one)).headers["x-blaze-cache"] == "miss"
    both = {**one, "prompt": [f"one {tag}", f"two {tag}"]}
    first = await http.post("/v1/completions", json=both)
    assert first.headers["x-blaze-cache"] == "miss"  # the least cached part decides
    second = await http.post("/v1/completions", json=both)
    assert second.headers["x-blaze-cache"] == "hit-memory"
    assert second.json()["choices"] == first.json()["choices"]
    usage = second.json()["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]


async def test_admin_figures_and_clear(http: httpx.AsyncClient) -> None:
    body = fresh()
    await post(http, body)
    figures = (await http.get("/admin/cache")).json()
    assert figures["enabled"] is True
    assert [level["level"] for level in figures["levels"]] == ["memory"]
    memory = figures["levels"][0]
    assert memory["entries"] >= 1 and memory["size_bytes"] > 0
    assert memory["max_bytes"] == 256 * 1024 * 1024
    assert figures["outcomes"]["miss"] >= 1
    cleared = (await http.post("/admin/cache/clear", json={"model": "default"})).json()
    assert cleared["model"] == "tiny" and cleared["cleared"]["memory"] >= 1
    assert (await post(http, body)).headers["x-blaze-cache"] == "miss"
    assert (await http.post("/admin/cache/clear")).json()["cleared"]["memory"] >= 1


@pytest.mark.parametrize(
    ("payload", "status"),
    [({"model": "nope"}, 404), ({"levels": ["tape"]}, 400), ({"modle": "tiny"}, 400)],
)
async def test_admin_clear_bad_input(
    http: httpx.AsyncClient, payload: dict[str, Any], status: int
) -> None:
    response = await http.post("/admin/cache/clear", json=payload)
    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
