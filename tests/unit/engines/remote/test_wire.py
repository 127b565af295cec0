"""The OpenAI wire format of the remote engine: upstream errors onto Blaze's exception tree."""

from __future__ import annotations

import json

import pytest

from blaze_ai.engines.remote.wire import stream_items, upstream_error
from blaze_ai.errors import (
    EngineUnavailableError,
    InvalidRequestError,
    UpstreamRateLimitError,
    UpstreamStreamError,
)
from blaze_ai.types import TextChunk


def body(message: str, type_: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": None}}).encode()


def test_429_is_an_upstream_rate_limit_with_its_retry_after() -> None:
    """``shared/cases/upstream-429-status.md``."""
    error = upstream_error(429, body("slow down", "rate_limit_error"), "2")
    assert isinstance(error, UpstreamRateLimitError)
    assert (error.status_code, error.retry_after_s) == (429, 2.0)


def test_5xx_and_4xx_keep_their_meaning() -> None:
    assert isinstance(upstream_error(503, body("down", "x"), None), EngineUnavailableError)
    assert isinstance(upstream_error(400, body("bad", "x"), None), InvalidRequestError)


def test_error_event_keeps_the_upstream_type_and_code() -> None:
    """``shared/cases/stream-fallback-before-content.md``."""
    event = {"error": {"message": "quota", "type": "insufficient_quota", "code": "q"}}
    with pytest.raises(UpstreamStreamError) as info:
        list(stream_items(event, chat=True))
    assert info.value.to_dict()["error"]["type"] == "insufficient_quota"
    assert info.value.code == "q"


def test_role_only_chunk_is_an_empty_chunk() -> None:
    event = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    assert list(stream_items(event, chat=True)) == [TextChunk(0, "", None)]
