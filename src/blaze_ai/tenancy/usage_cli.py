"""``blaze usage``: the sums of the usage records, as a table or JSON.

Only ``typer`` is imported with this module (``blaze`` imports it at start-up); SQLAlchemy and
the settings are imported when the command runs.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    import sqlalchemy as sa

NO_USAGE_TABLE = "error: no usage recorded yet (the database has no usage table)"

_HEADERS = {
    "requests": "requests",
    "prompt_tokens": "prompt",
    "completion_tokens": "completion",
    "cached_tokens": "cached",
    "images": "images",
    "errors": "errors",
    "client_disconnects": "hang-ups",
    "avg_latency_ms": "avg ms",
}


def usage(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML config file (auth.database_url).")
    ] = None,
    team: Annotated[str | None, typer.Option(help="Only this team.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this key id (sk-blz-...).")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time: ISO 8601 (UTC unless zoned) or Unix s.")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (same forms).")] = None,
    group_by: Annotated[
        str,
        typer.Option(help="Comma-separated: team, key_id, model, deployment, status, day, hour."),
    ] = "",
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Sum the usage records: requests, tokens, images, errors and hang-ups, per group."""
    from blaze_ai.errors import InvalidRequestError

    filters: dict[str, Any] = {
        "team": team,
        "key_id": key,
        "model": model,
        "since": None if since is None else parse_time(since, "--since"),
        "until": None if until is None else parse_time(until, "--until"),
        "group_by": [name.strip() for name in group_by.split(",") if name.strip()],
    }
    try:
        rows = _summarize(config, filters)
    except InvalidRequestError as exc:
        raise typer.BadParameter(exc.message, param_hint="--group-by") from None
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
    else:
        _print_table(rows, filters["group_by"])


def parse_time(text: str, option: str = "--since") -> float:
    """Unix seconds from ``1714521600(.5)`` or ISO 8601 (``2024-05-01``,
    ``2024-05-01T12:00``, ``2024-05-01T12:00Z``, ``...+02:00``); no zone means UTC.

    Raises:
        typer.BadParameter: neither form.
    """
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO 8601 time nor Unix seconds", param_hint=option
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _summarize(config: Path | None, filters: dict[str, Any]) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    from blaze_ai.config import load_settings
    from blaze_ai.errors import ConfigError
    from blaze_ai.tenancy.usage import summarize

    try:
        url = load_settings(config).auth.database_url
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(code=2) from None
    engine = _open(url)
    try:
        if not sa.inspect(engine).has_table("usage"):
            _no_usage()
        return summarize(engine, **filters)
    except sa.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().split("\n", 1)[0]
        typer.echo(f"error: cannot read the database: {detail}", err=True)
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()


def _open(url: str) -> sa.Engine:
    """An engine on ``url``; for a SQLite file, ``~`` expanded, and no file created."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "").expanduser()
        if not path.is_file():
            _no_usage()
        parsed = parsed.set(database=str(path))
    return sa.create_engine(parsed)


def _no_usage() -> NoReturn:
    typer.echo(NO_USAGE_TABLE, err=True)
    raise typer.Exit(code=2)


def _print_table(rows: list[dict[str, Any]], group_by: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    from blaze_ai.tenancy.usage_summary import METRICS

    if not rows:
        typer.echo("no usage records match")
        return
    table = Table()
    for name in dict.fromkeys(group_by):
        table.add_column(name, overflow="fold")  # wrapped, never cut, on a narrow terminal
    for metric in METRICS:
        table.add_column(_HEADERS[metric], justify="right", overflow="fold")
    for row in rows:
        groups = ["" if row[name] is None else str(row[name]) for name in dict.fromkeys(group_by)]
        values = [f"{row[metric]:,}" for metric in METRICS[:-1]]
        table.add_row(*groups, *values, f"{row['avg_latency_ms']:.1f}")
    console = Console(file=sys.stdout)
    if not console.is_terminal:  # a pipe or a file: the table's own width, not 80 columns
        console.width = max(console.width, 240)
    console.print(table)
