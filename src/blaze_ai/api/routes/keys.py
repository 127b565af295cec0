"""The admin API of tenancy: ``/admin/keys``, ``/admin/teams``, ``/admin/usage``.

Only the admin key reaches these (``api/auth.py``); with auth off they answer 400. The store is
synchronous SQL, so each call runs in a worker thread. A key's secret appears once, in the
answer to its creation; listings and errors name keys by their public id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request

from blaze_ai.api.openapi import error_responses
from blaze_ai.api.schemas.keys import (
    KeyCreate,
    KeyCreated,
    KeyInfo,
    KeyList,
    KeyUpdate,
    TeamCreate,
    TeamInfo,
    TeamList,
    TeamUpdate,
    UsageList,
)
from blaze_ai.api.state import tenancy_of
from blaze_ai.errors import AuthUnavailableError
from blaze_ai.tenancy.types import ApiKey, Limits, Team
from blaze_ai.tenancy.usage import summarize
from blaze_ai.tenancy.usage_summary import GROUPS

T = TypeVar("T")

logger = logging.getLogger(__name__)

router = APIRouter(
    prefix="/admin",
    responses=error_responses(
        400,
        described={
            401: "No API key, or not a valid one (`code`: `invalid_api_key`).",
            403: "The admin API needs the admin key.",
            503: "The key database cannot be reached (`Retry-After`).",
        },
    ),
)

_ONE = error_responses(404)


async def _call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``function(*args, **kwargs)`` in a worker thread (the store is synchronous SQL).

    Raises:
        AuthUnavailableError: the database cannot be reached (503 with ``Retry-After``).
    """
    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except sa.exc.OperationalError as exc:
        logger.warning("key_database_error", extra={"error": type(exc.orig).__name__})
        raise AuthUnavailableError("the key database cannot be reached; retry") from None


_GROUP = f"({'|'.join(GROUPS)})"
GROUP_BY_PATTERN = f"^({_GROUP}(,{_GROUP})*)?$"


def key_info(key: ApiKey) -> dict[str, Any]:
    """The JSON of a key (no secret)."""
    return {
        "object": "api_key",
        "key_id": key.key_id,
        "name": key.name,
        "team": key.team,
        "models": list(key.models),
        "rpm": key.limits.rpm,
        "tpm": key.limits.tpm,
        "max_parallel": key.limits.max_parallel,
        "expires_at": key.expires_at,
        "disabled": key.disabled,
        "revoked_at": key.revoked_at,
        "metadata": dict(key.metadata),
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    }


def team_info(team: Team) -> dict[str, Any]:
    """The JSON of a team."""
    return {
        "object": "team",
        "name": team.name,
        "rpm": team.limits.rpm,
        "tpm": team.limits.tpm,
        "max_parallel": team.limits.max_parallel,
        "disabled": team.disabled,
        "metadata": dict(team.metadata),
        "created_at": team.created_at,
    }


@router.post("/keys", response_model=KeyCreated, status_code=201)
async def create_key(body: KeyCreate, request: Request) -> dict[str, Any]:
    """A new key; the answer's ``key`` is its secret, shown this once."""
    store = tenancy_of(request).store
    key, secret = await _call(
        store.create_key,
        name=body.name,
        team=body.team,
        models=body.models,
        limits=Limits(body.rpm, body.tpm, body.max_parallel),
        expires_at=body.expires_at,
        metadata=body.metadata,
    )
    return {**key_info(key), "key": secret}


@router.get("/keys", response_model=KeyList)
async def list_keys(
    request: Request, team: str | None = None, include_revoked: bool = False
) -> dict[str, Any]:
    """Every key (of ``team``), revoked ones only with ``include_revoked``."""
    store = tenancy_of(request).store
    keys = await _call(store.list_keys, team, include_revoked=include_revoked)
    return {"object": "list", "data": [key_info(k) for k in keys]}


@router.get("/keys/{key_id}", response_model=KeyInfo, responses=_ONE)
async def get_key(key_id: str, request: Request) -> dict[str, Any]:
    """One key, by its public id."""
    return key_info(await _call(tenancy_of(request).store.get_key, key_id))


@router.patch("/keys/{key_id}", response_model=KeyInfo, responses=_ONE)
async def update_key(key_id: str, body: KeyUpdate, request: Request) -> dict[str, Any]:
    """Change the fields sent; every process sees it within ``auth.cache_ttl_s``."""
    changes = body.model_dump(exclude_unset=True)
    store = tenancy_of(request).store
    return key_info(await _call(store.update_key, key_id, changes))


@router.delete("/keys/{key_id}", response_model=KeyInfo, responses=_ONE)
async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
    """Revoke a key (kept for its usage history); refused everywhere within the cache TTL."""
    return key_info(await _call(tenancy_of(request).store.revoke_key, key_id))


@router.post("/teams", response_model=TeamInfo, status_code=201, responses=error_responses(409))
async def create_team(body: TeamCreate, request: Request) -> dict[str, Any]:
    """A new team with its limits."""
    store = tenancy_of(request).store
    limits = Limits(body.rpm, body.tpm, body.max_parallel)
    team = await _call(store.create_team, body.name, limits=limits, metadata=body.metadata)
    return team_info(team)


@router.get("/teams", response_model=TeamList)
async def list_teams(request: Request) -> dict[str, Any]:
    """Every team."""
    teams = await _call(tenancy_of(request).store.list_teams)
    return {"object": "list", "data": [team_info(t) for t in teams]}


@router.get("/teams/{name}", response_model=TeamInfo, responses=_ONE)
async def get_team(name: str, request: Request) -> dict[str, Any]:
    """One team."""
    return team_info(await _call(tenancy_of(request).store.get_team, name))


@router.patch("/teams/{name}", response_model=TeamInfo, responses=_ONE)
async def update_team(name: str, body: TeamUpdate, request: Request) -> dict[str, Any]:
    """Change the fields sent (``disabled: true`` blocks every key of the team)."""
    changes = body.model_dump(exclude_unset=True)
    store = tenancy_of(request).store
    return team_info(await _call(store.update_team, name, changes))


@router.delete("/teams/{name}", status_code=204, responses={**_ONE, **error_responses(409)})
async def delete_team(name: str, request: Request) -> None:
    """Delete a team without live keys (409 while it has some)."""
    await _call(tenancy_of(request).store.delete_team, name)


@router.get("/usage", response_model=UsageList)
async def usage(
    request: Request,
    team: str | None = None,
    key: str | None = None,
    model: str | None = None,
    since: float | None = Query(default=None, allow_inf_nan=False),
    until: float | None = Query(default=None, allow_inf_nan=False),
    group_by: str = Query(
        default="",
        pattern=GROUP_BY_PATTERN,
        description="Comma-separated: team, key_id, model, deployment, status, day, hour.",
    ),
) -> dict[str, Any]:
    """Usage summed per group, from the records of every process (``since``/``until``: Unix
    seconds)."""
    tenancy = tenancy_of(request)
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    rows = await _call(
        summarize,
        tenancy.database.engine,
        team=team,
        key_id=key,
        model=model,
        since=since,
        until=until,
        group_by=groups,
    )
    return {"object": "list", "data": rows}
