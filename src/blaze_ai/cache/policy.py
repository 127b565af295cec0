"""What the cache does with one request: look it up, store it, for how long, under which key.

By default only deterministic requests are cached (``temperature`` 0, or a fixed ``seed``): an
answer sampled at random is one draw among many, and replaying it would hide that. A model's
``policy: all`` widens that; ``off`` turns its caching off. The request's own controls narrow it
(``no-cache``: no lookup; ``no-store``: no store) and may set the entry's time to live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from blaze_ai.cache.entry import CacheKey
from blaze_ai.cache.keys import cache_key, model_version
from blaze_ai.config.schema import ModelConfig
from blaze_ai.types import CacheDirectives, SamplingParams

SHARED_SCOPE = ("shared",)


class Cacheable(Protocol):
    """A request the cache can plan for: who asks and their cache controls."""

    @property
    def tenant(self) -> str: ...

    @property
    def cache(self) -> CacheDirectives: ...


@dataclass(frozen=True, slots=True)
class ModelPolicy:
    """A served model's cache settings, resolved at start-up.

    Attributes:
        mode: ``deterministic``, ``all`` or ``off`` (see :class:`ModelCacheConfig`).
        shared: all tenants share the model's entries.
        ttl_s: default lifetime of an entry, in seconds.
        version: part of every key of the model (see :func:`model_version`).
    """

    mode: Literal["deterministic", "all", "off"]
    shared: bool
    ttl_s: float
    version: str

    @classmethod
    def from_config(cls, config: ModelConfig, default_ttl_s: float) -> ModelPolicy:
        """The policy of ``config``; ``default_ttl_s`` applies where it sets no ``ttl_s``."""
        cache = config.cache
        return cls(
            mode=cache.policy,
            shared=cache.shared,
            ttl_s=cache.ttl_s if cache.ttl_s is not None else default_ttl_s,
            version=model_version(config, cache.version),
        )


@dataclass(frozen=True, slots=True)
class CachePlan:
    """What to do with one request: ``lookup`` and/or ``store`` under ``key`` for ``ttl_s``."""

    key: CacheKey
    lookup: bool
    store: bool
    ttl_s: float


def is_deterministic(params: SamplingParams) -> bool:
    """True when the answer does not depend on chance: greedy decoding or a fixed seed."""
    return params.temperature == 0.0 or params.seed is not None


def plan_request(
    request: Cacheable,
    policy: ModelPolicy,
    *,
    deterministic: bool,
    model: str,
    namespace: str,
) -> CachePlan | None:
    """The plan for ``request`` to the served model ``model``; None: leave the cache alone.

    Args:
        request: the internal request (a frozen dataclass with ``tenant`` and ``cache``).
        policy: the model's policy.
        deterministic: whether the request's answer is reproducible (see
            :func:`is_deterministic` for text).
        model: the served model's canonical name.
        namespace: the configured namespace of requests without a tenant.
    """
    if policy.mode == "off" or (policy.mode == "deterministic" and not deterministic):
        return None
    directives = request.cache
    if directives.no_cache and directives.no_store:
        return None
    scope = SHARED_SCOPE if policy.shared else ("tenant", namespace, request.tenant)
    key = cache_key(request, model=model, version=policy.version, scope=scope)
    ttl_s = directives.ttl_s if directives.ttl_s is not None else policy.ttl_s
    return CachePlan(
        key, lookup=not directives.no_cache, store=not directives.no_store, ttl_s=ttl_s
    )
