"""The data of tenancy: limits, teams, keys (never their secrets), principals, usage records.

Times are Unix seconds (floats), as OpenAI's ``created`` fields.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ADMIN_KEY_ID = "admin"
"""The ``key_id`` of the admin key (``BLAZE_ADMIN_KEY``) in logs and usage records."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Rate limits of a key or a team; None is unlimited.

    Attributes:
        rpm: requests per window (``limits.window_s``, a minute by default).
        tpm: tokens (prompt + completion) per window.
        max_parallel: requests in progress at once.
    """

    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None


@dataclass(frozen=True, slots=True)
class Team:
    """A tenant: its keys' requests count against its limits too, and it scopes the cache."""

    name: str
    limits: Limits = Limits()
    disabled: bool = False
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as stored: everything but its secret (only the secret's SHA-256 is stored).

    Attributes:
        key_id: the public id, the secret's first characters (``sk-blz-`` and 8 more); shown
            in listings, logs and usage records.
        models: model names or globs (``fnmatch``) the key may use; empty: every model.
        expires_at: Unix seconds after which the key is refused; None: never.
        revoked_at: when it was revoked (refused from then on); None: live.
    """

    key_id: str
    name: str
    team: str
    models: tuple[str, ...] = ()
    limits: Limits = Limits()
    expires_at: float | None = None
    disabled: bool = False
    revoked_at: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from, as the auth layer found it.

    Attributes:
        key_id: the key's public id (``admin`` for the admin key).
        team: the tenant ("" for the admin key).
        models: names or globs the key may use; empty: every model.
        key_limits, team_limits: both apply; a request must fit under each.
        is_admin: may call ``/admin/*``.
    """

    key_id: str
    team: str
    models: tuple[str, ...] = ()
    key_limits: Limits = Limits()
    team_limits: Limits = Limits()
    is_admin: bool = False

    def may_use(self, *names: str) -> bool:
        """Whether one of ``names`` (a model's name and its aliases) matches the key's list."""
        if not self.models:
            return True
        return any(fnmatch.fnmatchcase(n, pattern) for n in names for pattern in self.models)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One finished request (success, error, client disconnect or cache hit).

    Attributes:
        created_at: Unix seconds when it ended.
        key_id, team: who asked (``admin`` / "" for the admin key).
        model: the served model's name; version: its registry version (None until one exists).
        deployment: the deployment that answered (None for a cache hit or a refusal).
        prompt_tokens, completion_tokens: tokens used; a hang-up counts those generated.
        cached_tokens: tokens of an answer served from the response cache.
        images: images generated.
        latency_ms: milliseconds from arrival to the end of the answer.
        status: the HTTP status (499: the client went away).
        error_type: the OpenAI error ``type`` of a failed request, else None.
    """

    created_at: float
    request_id: str
    key_id: str
    team: str
    model: str
    status: int
    latency_ms: float
    version: str | None = None
    deployment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    images: int = 0
    error_type: str | None = None
