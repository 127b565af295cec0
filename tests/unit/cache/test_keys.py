"""Cache keys: every output-changing parameter changes the key; spelled-out defaults do not."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from blaze_ai.api.schemas.chat import ChatCompletionRequest
from blaze_ai.api.schemas.completions import CompletionRequestBody
from blaze_ai.cache.keys import cache_key, model_version
from blaze_ai.config.schema import ModelConfig
from blaze_ai.types import ChatRequest
from tests.unit.cache.variants import BASE, SAME, VARIANTS

MESSAGES = [{"role": "user", "content": "Hello world"}]
SCOPE = ("tenant", "default", "")


def internal(fields: dict[str, Any]) -> ChatRequest:
    """The internal request of a chat body (``logprobs`` is refused by ``to_internal`` for
    now, so its parameters are converted here the same way, without the refusal)."""
    body = ChatCompletionRequest.model_validate({"model": "m", "messages": MESSAGES, **fields})
    if not body.logprobs:
        return body.to_internal("rid")
    plain = body.model_copy(update={"logprobs": None}).to_internal("rid")
    return dataclasses.replace(plain, extra_params=body.extra_params())


def digest(fields: dict[str, Any], *, scope: tuple[str, ...] = SCOPE, version: str = "v") -> str:
    return cache_key(internal(fields), model="m", version=version, scope=scope).digest


@pytest.mark.parametrize(("name", "a", "b"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_each_parameter_changes_the_key(name: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    assert digest({**BASE, **a}) != digest({**BASE, **b})


@pytest.mark.parametrize(("name", "a", "b"), SAME, ids=[s[0] for s in SAME])
def test_equivalent_requests_share_a_key(name: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    assert digest(a) == digest(b)


def test_request_id_does_not_change_the_key() -> None:
    req = internal(BASE)
    other = dataclasses.replace(req, request_id="another", user="someone")
    assert cache_key(req, model="m", version="v", scope=SCOPE) == cache_key(
        other, model="m", version="v", scope=SCOPE
    )


def test_tenants_model_and_version_change_the_key() -> None:
    base = digest(BASE)
    assert digest(BASE, scope=("tenant", "default", "team-a")) != digest(
        BASE, scope=("tenant", "default", "team-b")
    )
    assert digest(BASE, scope=("tenant", "other-namespace", "")) != base
    assert digest(BASE, scope=("shared",)) != base
    assert digest(BASE, version="v2") != base
    req = internal(BASE)
    assert cache_key(req, model="other", version="v", scope=SCOPE).digest != base


def test_chat_and_completion_with_the_same_text_differ() -> None:
    completion = CompletionRequestBody.model_validate(
        {"model": "m", "prompt": "Hello world", **BASE}
    ).to_internal("rid")[0]
    chat = internal(BASE)
    assert cache_key(completion, model="m", version="v", scope=SCOPE) != cache_key(
        chat, model="m", version="v", scope=SCOPE
    )


def test_extra_params_leave_defaults_out_and_are_canonical() -> None:
    body = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": MESSAGES,
            "logprobs": False,
            "response_format": {"type": "json_schema", "json_schema": {"b": 1.0, "a": [2.5]}},
            "metadata": {"trace": "x"},
        }
    )
    assert body.extra_params() == (
        ("response_format", '{"json_schema":{"a":[2.5],"b":1},"type":"json_schema"}'),
    )


def test_model_version_follows_the_model_not_the_replicas() -> None:
    def config(**deployment: Any) -> ModelConfig:
        return ModelConfig.model_validate(
            {"name": "m", "deployments": [{"engine": "llm", "model": "/a", **deployment}]}
        )

    base = model_version(config())
    assert model_version(config(replicas=3)) == base
    assert model_version(config(model="/b")) != base
    assert model_version(config(dtype="bfloat16")) != base
    assert model_version(config(), override="2") != base
