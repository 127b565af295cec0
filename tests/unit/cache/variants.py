"""Pairs of chat bodies that differ in one output-changing parameter (used by the key tests
in-process and over HTTP). Every pair is cacheable on both sides (temperature 0 or a seed)."""

from __future__ import annotations

from typing import Any

TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}

BASE: dict[str, Any] = {"temperature": 0, "seed": 1, "max_tokens": 3}

VARIANTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("temperature", {}, {"temperature": 0.7}),
    ("top_p", {}, {"top_p": 0.5}),
    ("max_tokens", {}, {"max_tokens": 4}),
    ("max_completion_tokens", {}, {"max_completion_tokens": 2}),
    ("stop", {}, {"stop": "zz"}),
    ("n", {}, {"n": 2}),
    ("seed", {}, {"seed": 2}),
    ("logprobs", {}, {"logprobs": True}),
    ("top_logprobs", {}, {"top_logprobs": 2}),
    ("tools", {}, {"tools": [TOOL]}),
    ("tool_choice", {"tools": [TOOL]}, {"tools": [TOOL], "tool_choice": "required"}),
    ("response_format", {}, {"response_format": {"type": "json_object"}}),
    ("presence_penalty", {}, {"presence_penalty": 0.5}),
    ("frequency_penalty", {}, {"frequency_penalty": 0.5}),
    ("logit_bias", {}, {"logit_bias": {"5": 10}}),
    ("parallel_tool_calls", {"tools": [TOOL]}, {"tools": [TOOL], "parallel_tool_calls": False}),
    ("messages", {}, {"messages": [{"role": "user", "content": "Hello there"}]}),
    ("unknown future field", {}, {"some_future_field": {"x": 1}}),
]

SAME: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "OpenAI defaults spelled out",
        {"max_tokens": 3},
        {
            "max_tokens": 3,
            "temperature": 1,
            "top_p": 1,
            "n": 1,
            "presence_penalty": 0,
            "frequency_penalty": 0,
            "logprobs": False,
            "logit_bias": {},
            "response_format": {"type": "text"},
            "tools": [],
            "tool_choice": "none",
            "parallel_tool_calls": True,
            "seed": None,
            "stop": None,
        },
    ),
    ("delivery-only fields", BASE, {**BASE, "stream": True, "user": "u1", "metadata": {"a": "b"}}),
    ("stop as a string or a list", {**BASE, "stop": "x"}, {**BASE, "stop": ["x"]}),
    ("max_completion_tokens is max_tokens", BASE, {**BASE, "max_completion_tokens": 3}),
    ("numbers", {**BASE, "logit_bias": {"5": 10}}, {**BASE, "logit_bias": {"5": 10.0}}),
    (
        "tool_choice auto is the default with tools",
        {**BASE, "tools": [TOOL]},
        {**BASE, "tools": [TOOL], "tool_choice": "auto"},
    ),
    ("cache controls", BASE, {**BASE, "cache": {"ttl": 5}}),
]
