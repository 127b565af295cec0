"""Bodies of ``/admin/keys``, ``/admin/teams`` and ``/admin/usage``. Times are Unix seconds."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from blaze_ai.api.schemas.base import INTEGRAL

INT32_MAX = 2**31 - 1
MAX_TPM = 10**15
"""Below 2**53, so the document's bound is an exact JSON number (the store takes 2**63 - 1)."""
SmallLimit = Annotated[int, Field(ge=1, le=INT32_MAX), INTEGRAL] | None
TokenLimit = Annotated[int, Field(ge=1, le=MAX_TPM), INTEGRAL] | None

NAME_PATTERN = r"^[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]*[^\x00-\x20\x7f])?$"
TEAM_PATTERN = r"^[^\x00-\x20\x7f/](?:[^\x00-\x1f\x7f/]*[^\x00-\x20\x7f/])?$"
"""A key or team name: no control characters and no outer spaces (the store also requires
``str.isprintable``, which a pattern cannot say); a team name has no ``/`` either (it is a
path segment of ``/admin/teams/{name}``)."""


class AdminBody(BaseModel):
    """Base of these bodies: no field beyond those declared (a typo is a 400 naming it), and
    no type coercion (``"disabled": 0`` is a 400, not false)."""

    model_config = ConfigDict(extra="forbid", strict=True)


ModelPattern = Annotated[str, Field(min_length=1, max_length=256)]


class LimitFields(AdminBody):
    """Limits of a key or team; null is unlimited."""

    rpm: SmallLimit = Field(default=None, description="Requests per `limits.window_s`.")
    tpm: TokenLimit = Field(default=None, description="Tokens per `limits.window_s`.")
    max_parallel: SmallLimit = Field(default=None, description="Requests at once.")


class KeyCreate(LimitFields):
    """``POST /admin/keys``: a new key of ``team`` (created when it does not exist)."""

    team: str = Field(min_length=1, max_length=128, pattern=TEAM_PATTERN)
    name: str = Field(default="default", min_length=1, max_length=256, pattern=NAME_PATTERN)
    models: list[ModelPattern] = Field(
        default_factory=list, description="Names or globs; [] is all."
    )
    expires_at: float | None = Field(default=None, gt=0)
    metadata: dict[str, Any] = Field(default_factory=dict)


class KeyUpdate(LimitFields):
    """``PATCH /admin/keys/{key_id}``: only the fields sent change (null: unlimited, never
    expires)."""

    name: str = Field(default="default", min_length=1, max_length=256, pattern=NAME_PATTERN)
    models: list[ModelPattern] = Field(default_factory=list)
    expires_at: float | None = Field(default=None, gt=0)
    disabled: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


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

    name: str = Field(min_length=1, max_length=128, pattern=TEAM_PATTERN)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TeamUpdate(LimitFields):
    """``PATCH /admin/teams/{name}``: only the fields sent change (null limits: unlimited)."""

    disabled: bool = False
    metadata: dict[str, Any] = Field(default_factory=dict)


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
