"""A request's cache controls, from its body (``"cache": {...}``) and its headers.

Body: ``"cache": {"no-cache": true, "no-store": true, "ttl": 600}`` (with the ``openai`` client:
``extra_body={"cache": {...}}``). Headers: ``Cache-Control: no-cache`` and/or ``no-store`` (as
in HTTP: ``no-cache`` skips the lookup, ``no-store`` skips storing), and
``X-Blaze-Cache-TTL: <seconds>``. A flag set in either place holds; the body's ``ttl`` wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from blaze_ai.errors import InvalidRequestError
from blaze_ai.types import CacheDirectives

MAX_TTL_S = 365 * 24 * 3600.0
TTL_HEADER = "x-blaze-cache-ttl"
STATUS_HEADER = "X-Blaze-Cache"


class CacheControlParam(BaseModel):
    """The body's ``cache`` object; unknown keys are refused (they are Blaze's own names)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    no_cache: bool = Field(default=False, alias="no-cache")
    no_store: bool = Field(default=False, alias="no-store")
    ttl: float | None = Field(default=None, gt=0, le=MAX_TTL_S)


def cache_directives(body: CacheControlParam | None, headers: Mapping[str, str]) -> CacheDirectives:
    """The request's :class:`CacheDirectives`.

    Raises:
        InvalidRequestError: ``X-Blaze-Cache-TTL`` is not a number of seconds in
            (0, one year].
    """
    tokens = {t.strip().lower() for t in headers.get("cache-control", "").split(",")}
    ttl_s = body.ttl if body is not None else None
    if ttl_s is None and TTL_HEADER in headers:
        ttl_s = _header_ttl(headers[TTL_HEADER])
    return CacheDirectives(
        no_cache="no-cache" in tokens or (body is not None and body.no_cache),
        no_store="no-store" in tokens or (body is not None and body.no_store),
        ttl_s=ttl_s,
    )


def _header_ttl(raw: str) -> float:
    try:
        ttl_s = float(raw)
    except ValueError:
        ttl_s = math.nan
    if not 0 < ttl_s <= MAX_TTL_S:
        raise InvalidRequestError(
            f"X-Blaze-Cache-TTL must be a number of seconds in (0, {MAX_TTL_S:.0f}]",
            param="X-Blaze-Cache-TTL",
        )
    return ttl_s
