"""OpenAI parameters Blaze does not interpret itself, as canonical, default-free JSON.

``tools``, ``tool_choice``, ``response_format``, ``logit_bias``, ``logprobs``... (and any field
Blaze does not know yet) can change an answer, so they must change its cache key, and an engine
that forwards to an upstream needs them. :func:`extra_params` turns them into sorted
``(name, canonical JSON)`` pairs: a field set to OpenAI's default is left out (sending
``"logprobs": false`` is the same request as not sending it), JSON objects have sorted keys,
and a float with an integral value is written as an integer (``-100.0`` as ``-100``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from blaze_ai.types import ExtraParams

NOT_OUTPUT_FIELDS = frozenset(
    {
        "metadata",  # stored with the request by OpenAI, never seen by the model
        "store",
        "service_tier",
        "prompt_cache_key",
        "safety_identifier",
        "user",
        "stream",
        "stream_options",
    }
)
"""Fields that never change an answer (how it is delivered or recorded only)."""

_FIXED_DEFAULTS: dict[str, Any] = {
    "logprobs": False,
    "parallel_tool_calls": True,
    "response_format": {"type": "text"},
    "logit_bias": {},
    "tools": [],
    "functions": [],
    "modalities": ["text"],
}
"""OpenAI's documented default of each field that has a fixed one."""


def extra_params(fields: Mapping[str, Any]) -> ExtraParams:
    """``fields`` (name -> parsed JSON value) as sorted, canonical pairs without defaults.

    ``None`` always means the default. ``tool_choice`` defaults to ``"auto"`` when tools are
    given and ``"none"`` otherwise (``function_call`` likewise with ``functions``).
    """
    defaults = {
        **_FIXED_DEFAULTS,
        "tool_choice": "auto" if fields.get("tools") else "none",
        "function_call": "auto" if fields.get("functions") else "none",
    }
    pairs = []
    for name, value in fields.items():
        if name in NOT_OUTPUT_FIELDS or value is None:
            continue
        canonical = _canonical(value)
        if name in defaults and canonical == _canonical(defaults[name]):
            continue
        pairs.append((name, canonical))
    return tuple(sorted(pairs))


def _canonical(value: Any) -> str:
    return json.dumps(_normalize(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _normalize(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return value
