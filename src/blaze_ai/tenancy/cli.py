"""``blaze keys`` and ``blaze teams``: API keys and teams in ``auth.database_url``.

Every command reads the configuration (``--config``; ``BLAZE_AUTH__DATABASE_URL`` wins),
migrates the database, and does one thing. Errors print ``error: ...`` and exit with 2. The
secret of a key is printed once, by ``keys create``; never by any other command.

Heavy imports (SQLAlchemy, Alembic) wait until a command runs, so ``blaze serve`` does not pay
for them at start-up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from blaze_ai.errors import BlazeError
from blaze_ai.tenancy import cli_format as out
from blaze_ai.tenancy.types import ApiKey, Limits, Team

if TYPE_CHECKING:
    from blaze_ai.tenancy.keys import KeyStore

keys_app = typer.Typer(help="Create, list, change and revoke API keys.", no_args_is_help=True)
teams_app = typer.Typer(help="Create, list, change and delete teams.", no_args_is_help=True)

DAY_S = 86_400.0

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file; its auth.database_url (BLAZE_AUTH__DATABASE_URL overrides it).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
_LIMIT_HELP = "an integer, or 'none' for unlimited"
RpmOption = Annotated[
    str | None, typer.Option("--rpm", help=f"Requests per window: {_LIMIT_HELP}.")
]
TpmOption = Annotated[str | None, typer.Option("--tpm", help=f"Tokens per window: {_LIMIT_HELP}.")]
ParallelOption = Annotated[
    str | None, typer.Option("--max-parallel", help=f"Requests at once: {_LIMIT_HELP}.")
]
MetadataOption = Annotated[
    str | None, typer.Option("--metadata", help="A JSON object kept with it (replaces the old).")
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option("--model", "-m", help="A model name or glob it may use (repeat; default: all)."),
]
ExpiresOption = Annotated[
    float | None, typer.Option("--expires-in-days", help="Refuse the key after this many days.")
]
DisableOption = Annotated[
    bool | None, typer.Option("--disable/--enable", help="Refuse (or accept again) its requests.")
]


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@contextmanager
def opened_store(config: Path | None) -> Iterator[KeyStore]:
    """The key store of the configured database, migrated; any error inside the block (a
    :class:`BlazeError`, a database error, a file error) becomes :func:`fail`."""
    import sqlalchemy.exc

    from blaze_ai.config import load_settings
    from blaze_ai.tenancy.db import Database
    from blaze_ai.tenancy.keys import KeyStore

    database: Database | None = None
    try:
        database = Database(load_settings(config).auth.database_url)
        database.migrate()
        yield KeyStore(database)
    except BlazeError as exc:
        fail(exc.message)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"database {database.url if database else ''}: {reason}")
    except OSError as exc:
        fail(str(exc))
    finally:
        if database is not None:
            database.dispose()


def _limit_changes(**given: str | None) -> dict[str, int | None]:
    """The limits given on the command line (``none``: unlimited); those not given left out."""
    changes: dict[str, int | None] = {}
    for name, text in given.items():
        if text is None:
            continue
        if text.strip().lower() in ("none", "unlimited"):
            changes[name] = None
            continue
        try:
            changes[name] = int(text)
        except ValueError:
            fail(f"--{name.replace('_', '-')} must be {_LIMIT_HELP}")
    return changes


def _metadata(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        fail("--metadata is not valid JSON")


def _expiry(days: float | None) -> float | None:
    if days is None:
        return None
    if not days > 0:
        fail("--expires-in-days must be more than 0")
    return time.time() + days * DAY_S


@keys_app.command("create")
def create_key(
    team: Annotated[str, typer.Option("--team", "-t", help="Its team (created if new).")],
    name: Annotated[str, typer.Option("--name", "-n", help="A label for it.")] = "default",
    model: ModelOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    expires_in_days: ExpiresOption = None,
    metadata: MetadataOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create an API key and print its secret (shown this once only)."""
    with opened_store(config) as store:
        key, secret = store.create_key(
            name=name,
            team=team,
            models=model or (),
            limits=Limits(**_limit_changes(rpm=rpm, tpm=tpm, max_parallel=max_parallel)),
            expires_at=_expiry(expires_in_days),
            metadata=_metadata(metadata),
        )
    if as_json:
        out.print_json({"key": out.key_json(key, time.time()), "secret": secret})
        return
    typer.echo(f"Created API key {key.key_id} ({key.name!r}, team {key.team!r}). Its secret:\n")
    typer.echo(f"    {secret}\n")
    typer.echo("This is the only time the secret is shown: store it now; it cannot be recovered.")


@keys_app.command("list")
def list_keys(
    team: Annotated[str | None, typer.Option("--team", "-t", help="Only this team's.")] = None,
    include_revoked: Annotated[bool, typer.Option("--all", help="Revoked keys too.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List the keys (not their secrets), oldest first."""
    with opened_store(config) as store:
        keys = store.list_keys(team, include_revoked=include_revoked)
    now = time.time()
    if as_json:
        out.print_json([out.key_json(key, now) for key in keys])
    else:
        out.print_keys(keys, now)


@keys_app.command("show")
def show_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (sk-blz-xxxxxxxx).")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show one key."""
    with opened_store(config) as store:
        key = store.get_key(key_id)
    _print_key(key, as_json)


@keys_app.command("update")
def update_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (sk-blz-xxxxxxxx).")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="A new label.")] = None,
    model: ModelOption = None,
    all_models: Annotated[
        bool, typer.Option("--all-models", help="Let it use every model.")
    ] = False,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    expires_in_days: ExpiresOption = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire.")] = False,
    disable: DisableOption = None,
    metadata: MetadataOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Change a key's name, models, limits, expiry, metadata, or disable / enable it."""
    changes: dict[str, Any] = _limit_changes(rpm=rpm, tpm=tpm, max_parallel=max_parallel)
    if model and all_models:
        fail("--model and --all-models contradict each other")
    if expires_in_days is not None and no_expiry:
        fail("--expires-in-days and --no-expiry contradict each other")
    given = {
        "name": name,
        "models": [] if all_models else model,
        "expires_at": _expiry(expires_in_days),
        "disabled": disable,
        "metadata": _metadata(metadata),
    }
    changes.update({field: value for field, value in given.items() if value is not None})
    if no_expiry:
        changes["expires_at"] = None
    if not changes:
        fail("nothing to change: give at least one option (see --help)")
    with opened_store(config) as store:
        key = store.update_key(key_id, changes)
    _print_key(key, as_json)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="The key's id (sk-blz-xxxxxxxx).")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Revoke a key for good (it stays listed with --all, for its usage history)."""
    with opened_store(config) as store:
        key = store.revoke_key(key_id)
    _print_key(key, as_json)


def _print_key(key: ApiKey, as_json: bool) -> None:
    now = time.time()
    if as_json:
        out.print_json(out.key_json(key, now))
    else:
        out.print_key(key, now)


TeamArgument = Annotated[str, typer.Argument(help="The team's name.")]


@teams_app.command("create")
def create_team(
    name: TeamArgument,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    metadata: MetadataOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Create a team (its limits apply to all its keys together)."""
    limits = Limits(**_limit_changes(rpm=rpm, tpm=tpm, max_parallel=max_parallel))
    with opened_store(config) as store:
        team = store.create_team(name, limits=limits, metadata=_metadata(metadata))
    _print_team(team, 0, as_json)


@teams_app.command("list")
def list_teams(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List the teams."""
    with opened_store(config) as store:
        teams = store.list_teams()
    if as_json:
        out.print_json([out.team_json(team) for team in teams])
    else:
        out.print_teams(teams)


@teams_app.command("show")
def show_team(name: TeamArgument, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Show one team and how many live keys it has."""
    with opened_store(config) as store:
        team = store.get_team(name)
        live = len(store.list_keys(name))
    _print_team(team, live, as_json)


@teams_app.command("update")
def update_team(
    name: TeamArgument,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: ParallelOption = None,
    disable: DisableOption = None,
    metadata: MetadataOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Change a team's limits or metadata, or disable / enable all its keys."""
    changes: dict[str, Any] = _limit_changes(rpm=rpm, tpm=tpm, max_parallel=max_parallel)
    given = {"disabled": disable, "metadata": _metadata(metadata)}
    changes.update({field: value for field, value in given.items() if value is not None})
    if not changes:
        fail("nothing to change: give at least one option (see --help)")
    with opened_store(config) as store:
        team = store.update_team(name, changes)
        live = len(store.list_keys(name))
    _print_team(team, live, as_json)


@teams_app.command("delete")
def delete_team(name: TeamArgument, config: ConfigOption = None) -> None:
    """Delete a team whose keys are all revoked (they are deleted with it)."""
    with opened_store(config) as store:
        store.delete_team(name)
    typer.echo(f"Deleted team {name!r}.")


def _print_team(team: Team, live_keys: int, as_json: bool) -> None:
    if as_json:
        out.print_json({**out.team_json(team), "live_keys": live_keys})
    else:
        out.print_team(team, live_keys)
