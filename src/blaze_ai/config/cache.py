"""Response cache settings: the levels, and each model's policy."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from blaze_ai.config.base import StrictModel as _Strict


class ModelCacheConfig(_Strict):
    """How the response cache treats one served model.

    Attributes:
        policy: ``deterministic`` caches requests with ``temperature`` 0 or a fixed ``seed``;
            ``all`` caches every request (sampled answers are then replayed); ``off`` never.
        shared: every tenant shares this model's entries (only for answers that are not
            private to a tenant, such as a public evaluation set).
        ttl_s: lifetime of an entry, in seconds; None: ``cache.ttl_s``.
        version: part of every key; change it to retire the model's entries (a change of the
            deployments' model, file or dtype already does that).
    """

    policy: Literal["deterministic", "all", "off"] = "deterministic"
    shared: bool = False
    ttl_s: float | None = Field(default=None, gt=0)
    version: str | None = None


class MemoryCacheConfig(_Strict):
    """Level 1 of the response cache: an LRU in this process, bounded by bytes.

    Attributes:
        max_bytes: most bytes of entries held (each entry's size is estimated).
    """

    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)


class DiskCacheConfig(_Strict):
    """Level 2: ``diskcache`` in a folder, bounded by size; it survives restarts.

    Attributes:
        directory: the folder (created if missing); processes may share one (diskcache is
            process-safe), sharing entries when their namespaces match.
        max_bytes: most bytes on disk before the least recently used entries are culled.
    """

    directory: Path = Path("~/.cache/blaze/responses")
    max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)


class RedisCacheConfig(_Strict):
    """Level 3: Redis, shared by every Blaze process that points at it.

    Attributes:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS).
        key_prefix: every key starts with it (no glob characters ``*?[]\\``).
        timeout_s: bound on one Redis call, in seconds; a slower call counts as a failure.
        retry_interval_s: after a failure Redis is skipped for this long, then tried again.
    """

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="blaze:cache:", pattern=r"^[^*?\[\]\\]*$")
    timeout_s: float = Field(default=0.25, gt=0, le=30)
    retry_interval_s: float = Field(default=2.0, gt=0)


class CacheConfig(_Strict):
    """The response cache: read-through memory -> disk -> Redis; every level optional.

    Attributes:
        namespace: the tenant namespace of requests that carry no tenant (until auth exists,
            every request); processes sharing a disk folder or Redis share entries only when
            their namespaces are equal.
        ttl_s: default lifetime of an entry, in seconds.
        memory: level 1 (on by default); null turns it off.
        disk: level 2 (off by default).
        redis: level 3 (off by default).
    """

    namespace: str = Field(default="default", min_length=1)
    ttl_s: float = Field(default=3600.0, gt=0)
    memory: MemoryCacheConfig | None = Field(default_factory=MemoryCacheConfig)
    disk: DiskCacheConfig | None = None
    redis: RedisCacheConfig | None = None
