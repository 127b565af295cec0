"""The ``blaze`` command (``blaze serve``, ``models``, ``status``, ``keys``, ``teams``, ``usage``):
the only place logging is set up."""

from __future__ import annotations

import time

_PROCESS_STARTED = time.perf_counter()

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from blaze_ai.config import Settings, load_settings  # noqa: E402
from blaze_ai.errors import ConfigError  # noqa: E402
from blaze_ai.observability.status_cli import status  # noqa: E402
from blaze_ai.tenancy.cli import keys_app, teams_app  # noqa: E402
from blaze_ai.tenancy.usage_cli import usage  # noqa: E402

app = typer.Typer(help="Blaze AI: a self-hosted, OpenAI-compatible inference server and gateway.")
app.add_typer(keys_app, name="keys")
app.add_typer(teams_app, name="teams")

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config file (default: embedded model).")
]


def _load(config: Path | None, **server: object) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(code=2) from None
    changes = {k: v for k, v in server.items() if v is not None}
    if changes:
        settings = settings.model_copy(
            update={"server": settings.server.model_copy(update=changes)}
        )
    return settings


def prefer_passive_omp() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; call before torch loads.

    Busy-waiting OpenMP threads were measured 4-10x slower on a machine whose cores are shared
    with other work (the HTTP server, other engines).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
) -> None:
    """Start the OpenAI-compatible server."""
    prefer_passive_omp()  # before torch is imported
    settings = _load(config, host=host, port=port, log_format=log_format, log_level=log_level)

    from blaze_ai.api.app import create_app
    from blaze_ai.api.monitoring import build_tracing
    from blaze_ai.engines.factory import make_engine_factory
    from blaze_ai.gateway.build import build_gateway
    from blaze_ai.logs import configure_logging
    from blaze_ai.server.serve import serve as serve_http
    from blaze_ai.tenancy.service import build_tenancy, check_exposure

    server = settings.server
    configure_logging(server.log_format, server.log_level)
    try:
        check_exposure(settings)
        tenancy = build_tenancy(settings)
        tracing = build_tracing(settings.tracing)
    except ConfigError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(code=2) from None
    limiter = tenancy.limiter if tenancy is not None else None
    gateway = build_gateway(settings, make_engine_factory(settings.runtime), limiter=limiter)
    application = create_app(
        settings, gateway, tenancy=tenancy, started_at=_PROCESS_STARTED, tracing=tracing
    )
    serve_http(application, server)


def _source(deployment: object) -> str:
    base_url = getattr(deployment, "base_url", None)
    model = str(getattr(deployment, "model", ""))
    return f"{base_url} ({model})" if base_url else model


@app.command()
def models(config: ConfigOption = None) -> None:
    """List the served models and their deployments."""
    from rich.console import Console
    from rich.table import Table

    settings = _load(config)
    table = Table("model", "aliases", "engine", "source", "replicas")
    for model in settings.models:
        for deployment in model.deployments:
            table.add_row(
                model.name,
                ", ".join(model.aliases),
                deployment.engine,
                _source(deployment),
                str(deployment.replicas),
            )
    Console(file=sys.stdout).print(table)


app.command()(usage)
app.command()(status)

if __name__ == "__main__":  # pragma: no cover
    app()
