"""How ``blaze keys`` and ``blaze teams`` print keys and teams: rich tables for people, JSON
for scripts. A secret is printed only by ``keys create``, never from here."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from blaze_ai.tenancy.types import ApiKey, Limits, Team


def key_status(key: ApiKey, now: float) -> str:
    """``revoked``, ``disabled``, ``expired`` (``expires_at`` before ``now``, Unix seconds) or
    ``active``; the first that applies."""
    if key.revoked_at is not None:
        return "revoked"
    if key.disabled:
        return "disabled"
    if key.expires_at is not None and key.expires_at < now:
        return "expired"
    return "active"


def key_json(key: ApiKey, now: float) -> dict[str, Any]:
    """The key's fields (times as Unix seconds), plus its ``status`` at ``now``."""
    data = dataclasses.asdict(key)
    data["models"] = list(key.models)
    data["status"] = key_status(key, now)
    return data


def team_json(team: Team) -> dict[str, Any]:
    """The team's fields (times as Unix seconds)."""
    return dataclasses.asdict(team)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def when(seconds: float | None, missing: str = "-", *, short: bool = False) -> str:
    """Unix seconds as ``2026-01-31 12:00:00Z`` (UTC; ``short``: ``2026-01-31 12:00``);
    ``missing`` for None."""
    if seconds is None:
        return missing
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%SZ")


def limits_text(limits: Limits) -> str:
    """``rpm 10, tpm 1000`` (unset limits left out), or ``unlimited``."""
    parts = [
        f"{name} {value}"
        for name, value in (
            ("rpm", limits.rpm),
            ("tpm", limits.tpm),
            ("parallel", limits.max_parallel),
        )
        if value is not None
    ]
    return ", ".join(parts) or "unlimited"


def print_keys(keys: Iterable[ApiKey], now: float) -> None:
    """One row per key: id, name, team, models, limits, expiry, status, last use."""
    table = _table("key_id", "name", "team", "models", "limits", "expires", "status", "last used")
    for key in keys:
        table.add_row(
            key.key_id,
            key.name,
            key.team,
            ", ".join(key.models) or "*",
            limits_text(key.limits),
            when(key.expires_at, "never", short=True),
            key_status(key, now),
            when(key.last_used_at, "never", short=True),
        )
    _print(table)


def print_key(key: ApiKey, now: float) -> None:
    """Every field of one key, one per row."""
    _print_fields(
        [
            ("key_id", key.key_id),
            ("name", key.name),
            ("team", key.team),
            ("status", key_status(key, now)),
            ("models", ", ".join(key.models) or "* (every model)"),
            ("limits", limits_text(key.limits)),
            ("expires", when(key.expires_at, "never")),
            ("created", when(key.created_at)),
            ("last used", when(key.last_used_at, "never")),
            ("revoked", when(key.revoked_at)),
            ("metadata", json.dumps(dict(key.metadata), ensure_ascii=False)),
        ]
    )


def print_teams(teams: Iterable[Team]) -> None:
    """One row per team: name, limits, status, creation time."""
    table = _table("team", "limits", "status", "created")
    for team in teams:
        status = "disabled" if team.disabled else "active"
        table.add_row(team.name, limits_text(team.limits), status, when(team.created_at))
    _print(table)


def print_team(team: Team, live_keys: int) -> None:
    """Every field of one team, one per row, and how many keys it has that are not revoked."""
    _print_fields(
        [
            ("team", team.name),
            ("status", "disabled" if team.disabled else "active"),
            ("limits", limits_text(team.limits)),
            ("live keys", str(live_keys)),
            ("created", when(team.created_at)),
            ("metadata", json.dumps(dict(team.metadata), ensure_ascii=False)),
        ]
    )


def _print_fields(rows: list[tuple[str, str]]) -> None:
    table = _table("field", "value", show_header=False)
    for name, value in rows:
        table.add_row(name, value)
    _print(table)


def _table(*headers: str, show_header: bool = True) -> Table:
    """A table whose cells wrap (never cut with an ellipsis) when the terminal is narrow."""
    table = Table(*headers, show_header=show_header)
    for column in table.columns:
        column.overflow = "fold"
    return table


def _print(table: Table) -> None:
    """Print as wide as the terminal; into a pipe or file, as wide as the table needs (rows
    stay whole lines for grep). Names are printed as they are (no rich markup)."""
    console = Console(file=sys.stdout, markup=False, highlight=False)
    if not console.is_terminal:
        unbounded = console.options.update(max_width=10_000)
        console.width = max(console.width, Measurement.get(console, unbounded, table).maximum)
    console.print(table)
