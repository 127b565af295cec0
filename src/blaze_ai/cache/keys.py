"""Canonical cache keys: a SHA-256 over everything that can change an answer.

The material of a key is the resolved model (never the alias the client sent), the model's
version, the scope (tenant namespace, or ``shared``), the request's kind, and every field of the
internal request except those that cannot change the answer (:data:`NOT_KEYED`). Fields are
read generically from the request dataclass, so a generation parameter added later is part of
the key without anyone remembering to add it. The API layer fills in OpenAI's defaults before
this point (a missing ``temperature`` is 1) and turns the parameters Blaze does not interpret
(``tools``, ``response_format``, ``logit_bias``...) into canonical JSON in ``extra_params``.

The material is serialized as JSON with sorted keys and no spaces (the same request always
gives the same bytes) and hashed with SHA-256.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from enum import Enum
from typing import Any

from blaze_ai.cache.entry import CacheKey
from blaze_ai.config.schema import ModelConfig

KEY_SCHEMA = 1
"""Bumped when the key material changes shape, so old entries are never read as new ones."""

NOT_KEYED = frozenset({"model", "request_id", "user", "tenant", "cache", "prompt_count"})
"""Request fields that never change the answer: the model is keyed by its resolved name, the
tenant through the scope; ``user`` is OpenAI's end-user id for abuse monitoring; ``cache`` holds
the request's cache controls; ``prompt_count`` (of a list of prompts) only counts against caps."""

VERSION_FIELDS = ("engine", "model", "gguf_file", "dtype", "base_url")
"""Deployment settings that change a model's answers; the model version hashes them."""


def cache_key(request: object, *, model: str, version: str, scope: tuple[str, ...]) -> CacheKey:
    """The key of ``request`` (a frozen dataclass such as ``ChatRequest``).

    Args:
        request: the internal request.
        model: the served model's canonical name (aliases resolved).
        version: the model's version (see :func:`model_version`).
        scope: ``("shared",)`` or ``("tenant", namespace, tenant)``.

    Raises:
        TypeError: ``request`` is not a dataclass instance.
    """
    if not dataclasses.is_dataclass(request) or isinstance(request, type):
        raise TypeError("a cache key is built from an internal request dataclass")
    material = {
        "schema": KEY_SCHEMA,
        "kind": type(request).__name__,
        "model": model,
        "version": version,
        "scope": list(scope),
        "request": {
            f.name: _plain(getattr(request, f.name))
            for f in dataclasses.fields(request)
            if f.name not in NOT_KEYED
        },
    }
    text = json.dumps(
        material, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return CacheKey(model, hashlib.sha256(text.encode()).hexdigest())


def model_version(config: ModelConfig, override: str | None = None) -> str:
    """16 hex digits over the deployments' model-defining settings (and ``override``)."""
    deployments = [
        {name: getattr(d, name, None) for name in VERSION_FIELDS} for d in config.deployments
    ]
    text = json.dumps([override, deployments], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data: dataclasses -> dicts, tuples -> lists, enums -> values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    return value
