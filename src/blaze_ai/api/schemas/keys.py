"""Bodies of ``/admin/keys``, ``/admin/teams`` and ``/admin/usage``. Times are Unix seconds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Limit = int | None


class AdminBody(BaseModel):
    """Base of these bodies: no field beyond those declared (a typo is a 400 naming it)."""

    model_config = ConfigDict(extra="forbid")


class LimitFields(AdminBody):
    """Limits of a key or team; null is unlimited."""

    rpm: Limit = Field(default=None, ge=1, description="Requests per `limits.window_s`.")
    tpm: Limit = Field(default=None, ge=1, description="Tokens per `limits.window_s`.")
    max_parallel: Limit = Field(default=None, ge=1, description="Requests at once.")


class KeyCreate(LimitFields):
    """``POST /admin/keys``: a new key of ``team`` (created when it does not exist)."""

    team: str = Field(min_length=1, max_length=128)
    name: str = Field(default="", max_length=256)
    models: list[str] = Field(default_factory=list, description="Names or globs; [] is all.")
    expires_at: float | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class KeyUpdate(LimitFields):
    """``PATCH /admin/keys/{key_id}``: only the fields sent change."""

    name: str | None = Field(default=None, max_length=256)
    models: list[str] | None = None
    expires_at: float | None = Field(default=None, gt=0)
    disabled: bool | None = None
    metadata: dict[str, Any] | None = None


class KeyInfo(LimitFields):
    """A key as listed: its public id, never its secret."""

    model_config = ConfigDict(extra="forbid")

    object: str = "api_key"
    key_id: str
    name: str
    team: str
    models: list[str]
    expires_at: float | None
    disabled: bool
    revoked_at: float | None
    metadata: dict[str, Any]
    created_at: float
    last_used_at: float | None


class KeyCreated(KeyInfo):
    """The new key, with its secret: shown this once, stored only as a hash."""

    key: str


class KeyList(AdminBody):
    object: str = "list"
    data: list[KeyInfo]


class TeamCreate(LimitFields):
    """``POST /admin/teams``."""

    name: str = Field(min_length=1, max_length=128)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TeamUpdate(LimitFields):
    """``PATCH /admin/teams/{name}``: only the fields sent change."""

    disabled: bool | None = None
    metadata: dict[str, Any] | None = None


class TeamInfo(LimitFields):
    object: str = "team"
    name: str
    disabled: bool
    metadata: dict[str, Any]
    created_at: float


class TeamList(AdminBody):
    object: str = "list"
    data: list[TeamInfo]


class UsageList(AdminBody):
    """``GET /admin/usage``: one row per group (tokens, images, requests, errors)."""

    object: str = "list"
    data: list[dict[str, Any]]
