"""``blaze status``: the dashboard's deployments table in the terminal, read from a running
server.

It asks ``GET /admin/dashboard`` (deployments with their p50/p99 latency over the latency
window), or ``GET /admin/deployments`` when the server runs with metrics off (it serves no
``/admin/dashboard`` then: 404), and prints one rich table; ``--watch`` redraws it every few
seconds, and shows why it cannot while the server is unreachable (a restart). With auth on the
admin key is needed (``--api-key`` or ``BLAZE_ADMIN_KEY``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

COLUMNS = (
    ("model", "model"),
    ("deployment", "name"),
    ("engine", "engine"),
    ("state", "engine_state"),
    ("health", "healthy"),
    ("breaker", "breaker_state"),
    ("in flight", "in_flight"),
    ("queue", "queue_depth"),
    ("batch", "batch_size"),
    ("p50 ms", "latency_p50_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("errors", "error_rate"),
    ("restarts", "restarts"),
)
"""Column title -> field of a deployment entry."""
TIMEOUT_S = 5.0
METRICS_OFF = frozenset({400, 404})
"""What ``/admin/dashboard`` answers an admin when the server runs with metrics off: it is not
served (404; 400 from a server that serves it but has no history)."""


class StatusError(Exception):
    """The server could not be read; the message says why and what to do."""


def status(
    url: Annotated[
        str, typer.Option(envvar="BLAZE_URL", help="The running server's base URL.")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="BLAZE_ADMIN_KEY", help="The admin key (when auth is on)."),
    ] = None,
    watch: Annotated[
        float | None, typer.Option(help="Redraw every this many seconds, until Ctrl-C.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON, not a table.")] = False,
) -> None:
    """Show the deployments of a running server: state, health, breaker, load, latency."""
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=TIMEOUT_S) as client:
            if api_key:
                client.headers["Authorization"] = f"Bearer {api_key}"
            if json_output:
                sys.stdout.write(json.dumps(fetch(client), indent=2) + "\n")
            elif watch:
                _watch(client, watch)
            else:
                Console().print(deployments_table(fetch(client)))
    except StatusError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None


def fetch(client: httpx.Client) -> list[dict[str, Any]]:
    """The server's deployments, with latency percentiles when its metrics are on.

    Raises:
        StatusError: unreachable, refused (401/403: the admin key), or not a Blaze server.
    """
    response = _get(client, "/admin/dashboard")
    if response.status_code in METRICS_OFF:  # no percentiles
        response = _get(client, "/admin/deployments")
    if response.status_code in (401, 403):
        raise StatusError(
            f"{client.base_url} refused the request ({response.status_code}): give the admin "
            "key with --api-key or BLAZE_ADMIN_KEY"
        )
    if response.status_code != 200:
        raise StatusError(f"{response.request.url} answered {response.status_code}")
    try:
        body = response.json()
        rows: list[dict[str, Any]] = body.get("deployments", body.get("data"))
    except (ValueError, AttributeError):
        raise StatusError(f"{response.request.url} is not a Blaze server") from None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise StatusError(f"{response.request.url} is not a Blaze server")
    return rows


def _get(client: httpx.Client, path: str) -> httpx.Response:
    try:
        return client.get(path)
    except httpx.HTTPError as exc:
        raise StatusError(f"cannot reach {client.base_url}: {exc}") from None


def deployments_table(rows: list[dict[str, Any]]) -> Table:
    """One row per deployment; red while its breaker is open, yellow while half open or
    unhealthy."""
    table = Table(*(title for title, _ in COLUMNS), title="Blaze deployments")
    for row in rows:
        cells = [_cell(field, row.get(field)) for _, field in COLUMNS]
        table.add_row(*cells, style=_style(row))
    return table


def _style(row: dict[str, Any]) -> str:
    if row.get("breaker_state") == "open":
        return "red"
    if row.get("breaker_state") == "half_open" or row.get("healthy") is False:
        return "yellow"
    return ""


def _cell(field: str, value: Any) -> Text:
    if value is None:
        return Text("-")
    if field == "healthy":
        return Text("healthy" if value else "unhealthy")
    if field == "error_rate":
        return Text(f"{value:.0%}")
    if isinstance(value, float):
        return Text(f"{value:.1f}")
    return Text(str(value))


def _watch(client: httpx.Client, every_s: float) -> None:
    """Redraw the table every ``every_s`` seconds until interrupted. A first read that fails
    ends the command (StatusError); a later one (the server restarting) leaves the last table
    shown, with why it is stale, and the next redraw tries again."""
    table = deployments_table(fetch(client))
    note = Text(time.strftime("%H:%M:%S"), style="dim")
    with Live(auto_refresh=False) as live:
        try:
            while True:
                live.update(Group(table, note), refresh=True)
                time.sleep(every_s)
                try:
                    table = deployments_table(fetch(client))
                    note = Text(time.strftime("%H:%M:%S"), style="dim")
                except StatusError as exc:
                    note = Text(f"{time.strftime('%H:%M:%S')} error: {exc}", style="red")
        except KeyboardInterrupt:
            return
