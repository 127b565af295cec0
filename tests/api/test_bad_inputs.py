"""A table of bad inputs: each gets a 4xx OpenAI error, and the server stays healthy."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

OK_MESSAGES = [{"role": "user", "content": "hi"}]


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": OK_MESSAGES, "max_tokens": 2, **fields}


# (case id, path, body as JSON-able value or raw bytes, expected status, expected param or None)
CASES: list[tuple[str, str, Any, int, str | None]] = [
    ("malformed json", "/v1/chat/completions", b'{"model": "tiny", "messages": [', 400, None),
    ("invalid utf-8", "/v1/chat/completions", b'{"model": "\xff\xfe"}', 400, None),
    ("body is an array", "/v1/chat/completions", [1, 2, 3], 400, None),
    ("body is empty", "/v1/chat/completions", b"", 400, None),
    ("missing model", "/v1/chat/completions", {"messages": OK_MESSAGES}, 400, "model"),
    ("model not a string", "/v1/chat/completions", chat(model=5), 400, "model"),
    ("missing messages", "/v1/chat/completions", {"model": "tiny"}, 400, "messages"),
    ("empty messages", "/v1/chat/completions", chat(messages=[]), 400, "messages"),
    ("messages not a list", "/v1/chat/completions", chat(messages="hi"), 400, "messages"),
    (
        "unknown role",
        "/v1/chat/completions",
        chat(messages=[{"role": "wizard", "content": "x"}]),
        400,
        "messages[0].role",
    ),
    (
        "content is a number",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": 42}]),
        400,
        "messages[0].content",
    ),
    (
        "content missing for user",
        "/v1/chat/completions",
        chat(messages=[{"role": "user"}]),
        400,
        "messages[0]",
    ),
    (
        "image content part",
        "/v1/chat/completions",
        chat(
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        ),
        400,
        None,
    ),
    ("temperature 5", "/v1/chat/completions", chat(temperature=5), 400, "temperature"),
    ("temperature a string", "/v1/chat/completions", chat(temperature="hot"), 400, "temperature"),
    ("top_p above 1", "/v1/chat/completions", chat(top_p=1.5), 400, "top_p"),
    ("n = 0", "/v1/chat/completions", chat(n=0), 400, "n"),
    ("n = 1000", "/v1/chat/completions", chat(n=1000), 400, "n"),
    ("n a fraction", "/v1/chat/completions", chat(n=1.5), 400, "n"),
    ("n a boolean", "/v1/chat/completions", chat(n=True), 400, "n"),
    ("n a string", "/v1/chat/completions", chat(n="2"), 400, "n"),
    ("negative max_tokens", "/v1/chat/completions", chat(max_tokens=-1), 400, "max_tokens"),
    ("max_tokens a string", "/v1/chat/completions", chat(max_tokens="ten"), 400, "max_tokens"),
    ("absurd max_tokens", "/v1/chat/completions", chat(max_tokens=10**9), 400, "max_tokens"),
    (
        "zero max_completion_tokens",
        "/v1/chat/completions",
        chat(max_completion_tokens=0),
        400,
        "max_completion_tokens",
    ),
    ("stop is a number", "/v1/chat/completions", chat(stop=5), 400, "stop"),
    ("too many stops", "/v1/chat/completions", chat(stop=[str(i) for i in range(17)]), 400, "stop"),
    ("empty stop string", "/v1/chat/completions", chat(stop=[""]), 400, "stop[0]"),
    ("stream not a bool", "/v1/chat/completions", chat(stream="yes"), 400, "stream"),
    ("seed a string", "/v1/chat/completions", chat(seed="abc"), 400, "seed"),
    (
        "presence_penalty 3",
        "/v1/chat/completions",
        chat(presence_penalty=3),
        400,
        "presence_penalty",
    ),
    ("logprobs unsupported", "/v1/chat/completions", chat(logprobs=True), 400, "logprobs"),
    ("top_logprobs unsupported", "/v1/chat/completions", chat(top_logprobs=2), 400, "top_logprobs"),
    (
        "tools unsupported",
        "/v1/chat/completions",
        chat(tools=[{"type": "function", "function": {"name": "f"}}]),
        400,
        "tools",
    ),
    (
        "json mode unsupported",
        "/v1/chat/completions",
        chat(response_format={"type": "json_object"}),
        400,
        "response_format",
    ),
    (
        "logit_bias unsupported",
        "/v1/chat/completions",
        chat(logit_bias={"5": 10}),
        400,
        "logit_bias",
    ),
    (
        "prompt too long",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": "fox " * 400}], max_tokens=None),
        400,
        "messages",
    ),
    ("unknown model", "/v1/chat/completions", chat(model="nope"), 404, "model"),
    (
        "oversized body",
        "/v1/chat/completions",
        chat(messages=[{"role": "user", "content": "x" * 70_000}]),
        413,
        None,
    ),
    ("completion without prompt", "/v1/completions", {"model": "tiny"}, 400, "prompt"),
    (
        "completion empty prompt list",
        "/v1/completions",
        {"model": "tiny", "prompt": []},
        400,
        "prompt",
    ),
    (
        "completion prompt a number",
        "/v1/completions",
        {"model": "tiny", "prompt": 123},
        400,
        "prompt",
    ),
    (
        "completion suffix",
        "/v1/completions",
        {"model": "tiny", "prompt": "a", "suffix": "b"},
        400,
        "suffix",
    ),
    # found by a break-it review: 64 prompts x n=128 asked for 8,192 sequences at once
    (
        "completion prompts x n over 128",
        "/v1/completions",
        {"model": "tiny", "prompt": ["a"] * 64, "n": 3},
        400,
        "n",
    ),
    (
        "completion prompt too long",
        "/v1/completions",
        {"model": "tiny", "prompt": "fox " * 400},
        400,
        "prompt",
    ),
]


async def post(http: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    """POST ``body``: raw bytes as they are (labelled JSON), anything else as JSON."""
    if isinstance(body, bytes):
        return await http.post(path, content=body, headers={"content-type": "application/json"})
    return await http.post(path, json=body)


@pytest.mark.parametrize(
    ("case", "path", "body", "status", "param"), CASES, ids=[c[0] for c in CASES]
)
async def test_bad_input_gets_openai_error(
    http: httpx.AsyncClient, case: str, path: str, body: Any, status: int, param: str | None
) -> None:
    response = await post(http, path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param, error


async def test_wrong_method_and_path_are_openai_errors(http: httpx.AsyncClient) -> None:
    for response in (
        await http.get("/v1/chat/completions"),
        await http.get("/v1/nothing-here"),
    ):
        assert response.status_code in (404, 405)
        assert "message" in response.json()["error"]


async def test_server_still_healthy_after_bad_inputs(http: httpx.AsyncClient) -> None:
    for _, path, body, _, _ in CASES:
        await post(http, path, body)
    assert (await http.get("/health")).status_code == 200
    ok = await http.post("/v1/chat/completions", json=chat())
    assert ok.status_code == 200
    assert ok.json()["usage"]["completion_tokens"] == 2
