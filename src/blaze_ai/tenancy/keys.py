"""API keys and teams in the tenancy database: secrets (made, hashed, looked up) and the store.

A secret is ``sk-blz-`` and 43 URL-safe characters (32 random bytes). Its first 15 characters
are its public ``key_id`` (the primary key, shown in listings, logs and usage records); only
its SHA-256 is stored, and it is shown once, when the key is created. A lookup finds the row
by ``key_id`` and compares the hashes in constant time.

The store's methods are synchronous (one short transaction each); async callers run them in
a worker thread. Every method may raise ``sqlalchemy.exc.SQLAlchemyError`` when the database
cannot be reached.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from blaze_ai.errors import BlazeError, ConflictError, NotFoundError
from blaze_ai.tenancy import fields
from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.tables import api_keys, teams
from blaze_ai.tenancy.types import ApiKey, Limits, Team

logger = logging.getLogger(__name__)

SECRET_PREFIX = "sk-blz-"
SECRET_BYTES = 32
SECRET_LENGTH = len(SECRET_PREFIX) + 43  # token_urlsafe(32): 43 characters, no padding
KEY_ID_LENGTH = len(SECRET_PREFIX) + 8
_URLSAFE = frozenset(string.ascii_letters + string.digits + "-_")
_INSERT_ATTEMPTS = 5

NO_LIMITS = Limits()
"""Unlimited (the default limits of a new key or team)."""


def new_secret() -> str:
    """A fresh secret: ``sk-blz-`` and 43 URL-safe characters (32 random bytes)."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def key_id_of(secret: str) -> str | None:
    """The public id of a secret (its first 15 characters: ``sk-blz-`` and 8 more), or None when
    ``secret`` is not a well-formed Blaze secret (prefix, length, alphabet). Never raises."""
    if not isinstance(secret, str) or len(secret) != SECRET_LENGTH:
        return None
    prefix, body = secret[: len(SECRET_PREFIX)], secret[len(SECRET_PREFIX) :]
    if prefix != SECRET_PREFIX or not _URLSAFE.issuperset(body):
        return None
    return secret[:KEY_ID_LENGTH]


def hash_secret(secret: str) -> str:
    """The SHA-256 of the secret's UTF-8 bytes, as 64 lowercase hex digits (what is stored)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyMatch:
    """A key found by its secret, and its team (the caller checks revoked / disabled / expired)."""

    key: ApiKey
    team: Team


class KeyStore:
    """Keys and teams, read and written in the tenancy database (migrated beforehand).

    Args:
        database: the database (:meth:`Database.migrate` already run).
        clock: Unix seconds, for ``created_at`` and ``revoked_at``.
    """

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = database
        self._clock = clock

    def find(self, secret: str) -> KeyMatch | None:
        """The key whose secret this is, with its team, in one indexed query; None when the text
        is malformed (no database access then), unknown, or its hash differs. Revoked,
        disabled and expired keys are returned too."""
        key_id = key_id_of(secret)
        if key_id is None:
            return None
        query = (
            sa.select(api_keys, *_TEAM_LABELS)
            .join(teams, api_keys.c.team == teams.c.name)
            .where(api_keys.c.key_id == key_id)
        )
        with self._db.read() as connection:
            row = connection.execute(query).first()
        if row is None or not hmac.compare_digest(hash_secret(secret), row.secret_sha256):
            return None
        values = row._mapping
        return KeyMatch(_api_key(values), _team(values["team"], values, prefix="team_"))

    def create_key(
        self,
        *,
        name: str,
        team: str,
        models: Sequence[str] = (),
        limits: Limits = NO_LIMITS,
        expires_at: float | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key (and its team, without limits, when there is none yet).

        Args:
            name: a label, 1-256 printable characters.
            team: the team's name, 1-128 printable characters.
            models: names or ``fnmatch`` globs the key may use; empty: every model.
            limits: the key's own limits (the team's apply too).
            expires_at: Unix seconds after which it is refused; None: never.
            metadata: a JSON object kept with the key.

        Returns:
            The record, and the secret: shown to the caller once, never stored.

        Raises:
            InvalidRequestError: a value is invalid (``param`` names it).
        """
        row: dict[str, Any] = {
            "name": fields.key_name("name", name),
            "team": fields.team_name("team", team),
            "models": fields.models("models", models),
            **_limit_columns(fields.limits(limits)),
            "expires_at": fields.expiry("expires_at", expires_at),
            "disabled": False,
            "revoked_at": None,
            "metadata": fields.metadata("metadata", metadata),
            "created_at": self._clock(),
            "last_used_at": None,
        }
        with self._db.write() as connection:
            _insert_ignore(connection, teams, _new_team_row(team, NO_LIMITS, {}, row["created_at"]))
            secret = _insert_key(connection, row)
            key = _select_key(connection, row["key_id"])
        logger.info("api key created", extra={"key_id": key.key_id, "team": key.team})
        return key, secret

    def get_key(self, key_id: str) -> ApiKey:
        """The key with this public id (revoked ones too).

        Raises:
            NotFoundError: no key has this id.
        """
        with self._db.read() as connection:
            return _select_key(connection, key_id)

    def list_keys(self, team: str | None = None, *, include_revoked: bool = False) -> list[ApiKey]:
        """Keys, oldest first: of one team or of all; revoked ones only when asked."""
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if team is not None:
            query = query.where(api_keys.c.team == team)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._db.read() as connection:
            return [_api_key(row._mapping) for row in connection.execute(query)]

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> ApiKey:
        """Change some of a key's fields: ``name``, ``models``, ``rpm``, ``tpm``,
        ``max_parallel`` (None: unlimited), ``expires_at``, ``disabled``, ``metadata``.

        Returns:
            The key as stored afterwards.

        Raises:
            InvalidRequestError: an unknown field or an invalid value (``param`` names it).
            NotFoundError: no key has this id.
        """
        values = fields.changes(fields.KEY_CHANGES, changes)
        with self._db.write() as connection:
            if values:
                where = api_keys.c.key_id == key_id
                connection.execute(sa.update(api_keys).where(where).values(values))
            key = _select_key(connection, key_id)
        logger.info("api key updated", extra={"key_id": key.key_id, "fields": sorted(values)})
        return key

    def revoke_key(self, key_id: str) -> ApiKey:
        """Refuse the key from now on (``revoked_at`` set; the row stays). Revoking a revoked
        key changes nothing.

        Raises:
            NotFoundError: no key has this id.
        """
        live = sa.and_(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
        with self._db.write() as connection:
            connection.execute(sa.update(api_keys).where(live).values(revoked_at=self._clock()))
            key = _select_key(connection, key_id)
        logger.info("api key revoked", extra={"key_id": key.key_id, "team": key.team})
        return key

    def touch(self, last_used: Mapping[str, float]) -> None:
        """Set ``last_used_at`` of several keys at once ({key_id: Unix seconds}); a time older
        than the stored one and an unknown id (``admin``) are ignored."""
        if not last_used:
            return
        params = [{"k": key_id, "t": float(at)} for key_id, at in sorted(last_used.items())]
        column = api_keys.c.last_used_at
        statement = (
            sa.update(api_keys)
            .where(api_keys.c.key_id == sa.bindparam("k"))
            .where(sa.or_(column.is_(None), column < sa.bindparam("t")))
            .values(last_used_at=sa.bindparam("t"))
        )
        with self._db.write() as connection:
            connection.execute(statement, params)

    def create_team(
        self, name: str, *, limits: Limits = NO_LIMITS, metadata: Mapping[str, Any] | None = None
    ) -> Team:
        """Create a team.

        Raises:
            InvalidRequestError: an invalid name (1-128 printable characters), limit or metadata.
            ConflictError: a team has this name already.
        """
        row = _new_team_row(
            fields.team_name("name", name),
            fields.limits(limits),
            fields.metadata("metadata", metadata),
            self._clock(),
        )
        with self._db.write() as connection:
            if not _insert_ignore(connection, teams, row):
                raise ConflictError(f"team {name!r} exists already", param="name")
            team = _select_team(connection, name)
        logger.info("team created", extra={"team": name})
        return team

    def get_team(self, name: str) -> Team:
        """The team with this name.

        Raises:
            NotFoundError: no team has this name.
        """
        with self._db.read() as connection:
            return _select_team(connection, name)

    def list_teams(self) -> list[Team]:
        """Every team, by name."""
        with self._db.read() as connection:
            rows = connection.execute(sa.select(teams).order_by(teams.c.name))
            return [_team(row.name, row._mapping) for row in rows]

    def update_team(self, name: str, changes: Mapping[str, Any]) -> Team:
        """Change some of a team's fields: ``rpm``, ``tpm``, ``max_parallel`` (None:
        unlimited), ``disabled``, ``metadata``.

        Raises:
            InvalidRequestError: an unknown field or an invalid value (``param`` names it).
            NotFoundError: no team has this name.
        """
        values = fields.changes(fields.TEAM_CHANGES, changes)
        with self._db.write() as connection:
            if values:
                connection.execute(sa.update(teams).where(teams.c.name == name).values(values))
            team = _select_team(connection, name)
        logger.info("team updated", extra={"team": name, "fields": sorted(values)})
        return team

    def delete_team(self, name: str) -> None:
        """Delete a team whose keys are all revoked; its revoked keys go with it (their usage
        records stay: they name the key and team as text).

        Raises:
            NotFoundError: no team has this name.
            ConflictError: the team still has keys that are not revoked.
        """
        live = sa.and_(api_keys.c.team == name, api_keys.c.revoked_at.is_(None))
        with self._db.write() as connection:
            _select_team(connection, name)
            count = connection.execute(sa.select(sa.func.count()).where(live)).scalar_one()
            if count:
                keys = f"{count} live key{'s' if count > 1 else ''}"
                raise ConflictError(f"team {name!r} has {keys}; revoke them first", param="name")
            connection.execute(sa.delete(api_keys).where(api_keys.c.team == name))
            connection.execute(sa.delete(teams).where(teams.c.name == name))
        logger.info("team deleted", extra={"team": name})


_TEAM_LABELS = tuple(
    teams.c[name].label(f"team_{name}")
    for name in ("rpm", "tpm", "max_parallel", "disabled", "metadata", "created_at")
)


def _shown(text: str) -> str:
    """An id or name as an error message may show it: at most a key_id's length (a secret
    passed by mistake is never echoed whole), control characters escaped."""
    text = str(text)
    return repr(text if len(text) <= KEY_ID_LENGTH else text[:KEY_ID_LENGTH] + "…")


def _limit_columns(limits: Limits, prefix: str = "") -> dict[str, int | None]:
    return {
        f"{prefix}rpm": limits.rpm,
        f"{prefix}tpm": limits.tpm,
        f"{prefix}max_parallel": limits.max_parallel,
    }


def _limits(values: sa.RowMapping, prefix: str = "") -> Limits:
    return Limits(values[f"{prefix}rpm"], values[f"{prefix}tpm"], values[f"{prefix}max_parallel"])


def _api_key(values: sa.RowMapping) -> ApiKey:
    return ApiKey(
        key_id=values["key_id"],
        name=values["name"],
        team=values["team"],
        models=tuple(values["models"]),
        limits=_limits(values),
        expires_at=values["expires_at"],
        disabled=bool(values["disabled"]),
        revoked_at=values["revoked_at"],
        metadata=dict(values["metadata"]),
        created_at=values["created_at"],
        last_used_at=values["last_used_at"],
    )


def _team(name: str, values: sa.RowMapping, prefix: str = "") -> Team:
    return Team(
        name=name,
        limits=_limits(values, prefix),
        disabled=bool(values[f"{prefix}disabled"]),
        metadata=dict(values[f"{prefix}metadata"]),
        created_at=values[f"{prefix}created_at"],
    )


def _new_team_row(
    name: str, limits: Limits, metadata: dict[str, Any], created_at: float
) -> dict[str, Any]:
    return {
        "name": name,
        **_limit_columns(limits),
        "disabled": False,
        "metadata": metadata,
        "created_at": created_at,
    }


def _insert_ignore(connection: sa.Connection, table: sa.Table, row: Mapping[str, Any]) -> bool:
    """Insert ``row`` unless its primary key exists (no error, no race); whether it did."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(row).on_conflict_do_nothing()
    inserted = statement.returning(*table.primary_key.columns)  # rowcount: -1 on psycopg
    return connection.execute(inserted).first() is not None


def _insert_key(connection: sa.Connection, row: dict[str, Any]) -> str:
    """Insert the key with a fresh secret (another on a key_id collision); its secret. Sets
    ``row["key_id"]`` and ``row["secret_sha256"]``."""
    for _ in range(_INSERT_ATTEMPTS):
        secret = new_secret()
        row.update(key_id=secret[:KEY_ID_LENGTH], secret_sha256=hash_secret(secret))
        if _insert_ignore(connection, api_keys, row):
            return secret
        logger.warning("api key id collision; drawing another", extra={"key_id": row["key_id"]})
    raise BlazeError(f"no unused key id after {_INSERT_ATTEMPTS} random draws")


def _select_key(connection: sa.Connection, key_id: str) -> ApiKey:
    row = connection.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    if row is None:
        raise NotFoundError(f"API key {_shown(key_id)} not found", param="key_id")
    return _api_key(row._mapping)


def _select_team(connection: sa.Connection, name: str) -> Team:
    row = connection.execute(sa.select(teams).where(teams.c.name == name)).first()
    if row is None:
        raise NotFoundError(f"team {str(name)[:128]!r} not found", param="team")
    return _team(row.name, row._mapping)
