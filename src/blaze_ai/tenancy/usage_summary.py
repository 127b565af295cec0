"""Sums of the ``usage`` table, per group (team, key, model, deployment, status, UTC day or
hour): what ``blaze usage`` prints."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from blaze_ai.errors import InvalidRequestError
from blaze_ai.tenancy import tables

CLIENT_DISCONNECT_STATUS = 499
"""The status of a request whose client went away (nginx's convention)."""

_BUCKET_S = {"day": 86_400, "hour": 3_600}
_COLUMNS = ("team", "key_id", "model", "deployment", "status")
GROUPS = (*_COLUMNS, *_BUCKET_S)
"""The names ``group_by`` accepts."""

METRICS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "images",
    "errors",
    "client_disconnects",
    "avg_latency_ms",
)
"""The sums of each group, in the order they are returned."""


class _Bucket(sa.sql.expression.FunctionElement[int]):
    """``floor(created_at / seconds)``: the index of a UTC bucket of Unix time."""

    type = sa.BigInteger()
    inherit_cache = True

    def __init__(self, seconds: int) -> None:
        super().__init__(tables.usage.c.created_at, sa.literal_column(str(int(seconds))))


@compiles(_Bucket)
def _floor(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    time, seconds = element.clauses
    return f"FLOOR({compiler.process(time, **kw)} / {compiler.process(seconds, **kw)})"


@compiles(_Bucket, "sqlite")
def _floor_sqlite(element: _Bucket, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite has FLOOR only when built with its math functions; a cast truncates, which is the
    # floor for the times after 1970 that usage records have.
    time, seconds = element.clauses
    return f"CAST({compiler.process(time, **kw)} / {compiler.process(seconds, **kw)} AS INTEGER)"


def summarize(
    engine: sa.Engine,
    *,
    team: str | None = None,
    key_id: str | None = None,
    model: str | None = None,
    since: float | None = None,
    until: float | None = None,
    group_by: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Sum the usage records that match the filters, per group.

    Args:
        engine: the database holding the ``usage`` table.
        team, key_id, model: keep only the records of this team, key or model (exact names).
        since, until: keep records with ``since <= created_at < until`` (Unix seconds).
        group_by: names among :data:`GROUPS` (``day`` and ``hour`` are UTC buckets of
            ``created_at``); empty: one total.

    Returns:
        One dict per group with records, ordered by the group names: the group's values
        (``day`` as ``2024-05-01``, ``hour`` as ``2024-05-01T13:00Z``, ``status`` an int), then
        :data:`METRICS`: ``requests``, the token and image sums, ``errors`` (status >= 400,
        except 499), ``client_disconnects`` (status 499), ``avg_latency_ms`` (milliseconds).
        No matching record: an empty list.

    Raises:
        InvalidRequestError: a ``group_by`` name is not one of :data:`GROUPS` (``param``
            ``group_by``).
        sqlalchemy.exc.SQLAlchemyError: the database could not be read.
    """
    names = _group_names(group_by)
    groups = [_group_expression(name).label(name) for name in names]
    query = sa.select(*groups, *_sums()).where(*_filters(team, key_id, model, since, until))
    if groups:
        query = query.group_by(*groups).order_by(*groups)
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [_result(row, names) for row in rows if row["requests"]]


def _group_names(group_by: Sequence[str]) -> list[str]:
    unknown = [name for name in group_by if name not in GROUPS]
    if unknown:
        raise InvalidRequestError(
            f"cannot group usage by {', '.join(map(repr, unknown))}; "
            f"choose among {', '.join(GROUPS)}",
            param="group_by",
        )
    return list(dict.fromkeys(group_by))


def _group_expression(name: str) -> sa.ColumnElement[Any]:
    if name in _BUCKET_S:
        return _Bucket(_BUCKET_S[name])
    return tables.usage.c[name]


def _sums() -> list[sa.Label[Any]]:
    usage = tables.usage.c
    status = usage.status
    error = sa.and_(status >= 400, status != CLIENT_DISCONNECT_STATUS)
    return [
        sa.func.count().label("requests"),
        *(
            sa.func.coalesce(sa.func.sum(usage[name]), 0).label(name)
            for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "images")
        ),
        sa.func.coalesce(sa.func.sum(sa.case((error, 1), else_=0)), 0).label("errors"),
        sa.func.coalesce(
            sa.func.sum(sa.case((status == CLIENT_DISCONNECT_STATUS, 1), else_=0)), 0
        ).label("client_disconnects"),
        sa.func.avg(usage.latency_ms).label("avg_latency_ms"),
    ]


def _filters(
    team: str | None,
    key_id: str | None,
    model: str | None,
    since: float | None,
    until: float | None,
) -> list[sa.ColumnElement[bool]]:
    usage = tables.usage.c
    filters = [
        column == value
        for column, value in ((usage.team, team), (usage.key_id, key_id), (usage.model, model))
        if value is not None
    ]
    if since is not None:
        filters.append(usage.created_at >= since)
    if until is not None:
        filters.append(usage.created_at < until)
    return filters


def _result(row: sa.RowMapping, names: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {name: _group_value(name, row[name]) for name in names}
    for metric in METRICS[:-1]:
        result[metric] = int(row[metric])
    result["avg_latency_ms"] = float(row["avg_latency_ms"])
    return result


def _group_value(name: str, value: Any) -> Any:
    if name not in _BUCKET_S or value is None:
        return value
    start = datetime.fromtimestamp(int(value) * _BUCKET_S[name], UTC)
    return start.strftime("%Y-%m-%d" if name == "day" else "%Y-%m-%dT%H:00Z")
