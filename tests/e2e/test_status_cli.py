"""Issue 13: ``blaze status`` reads the deployments table from a running ``blaze serve``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blaze_ai.cli import app
from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import BlazeServer
from tests.e2e.servers import start

ADMIN_KEY = "status-admin-key-0123456789abcdef"
WIDE = {"COLUMNS": "200"}
"""A terminal wide enough for the whole table."""


def test_status_prints_every_deployment_of_the_running_server(tiny_server: BlazeServer) -> None:
    result = CliRunner().invoke(app, ["status", "--url", tiny_server.base_url], env=WIDE)
    assert result.exit_code == 0, result.output
    for text in ("tiny/0", "digits/0", "llm", "diffusion", "ready", "closed", "p99 ms"):
        assert text in result.output
    as_json = CliRunner().invoke(app, ["status", "--url", tiny_server.base_url, "--json"])
    rows = json.loads(as_json.output)
    assert {r["name"] for r in rows} == {"tiny/0", "digits/0"}
    assert {"latency_p50_ms", "latency_p99_ms", "breaker_state"} <= set(rows[0])


def test_status_says_what_is_wrong_when_it_cannot_read_the_server(
    tmp_path: Path, tiny_config: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(app, ["status", "--url", nobody])
    assert result.exit_code == 1 and "cannot reach" in result.output
    (tmp_path / "admin.key").write_text(ADMIN_KEY)
    config = tiny_config.read_text() + (
        "auth:\n"
        "  enabled: true\n"
        f"  admin_key_file: '{tmp_path / 'admin.key'}'\n"
        f"  database_url: 'sqlite:///{tmp_path / 'keys.db'}'\n"
    )
    with start(tmp_path / "keyed", config) as server:
        refused = CliRunner().invoke(
            app, ["status", "--url", server.base_url], env={**WIDE, "BLAZE_ADMIN_KEY": ""}
        )
        assert refused.exit_code == 1 and "--api-key" in refused.output
        args = ["status", "--url", server.base_url, "--api-key", ADMIN_KEY]
        keyed = CliRunner().invoke(app, args, env=WIDE)
        assert keyed.exit_code == 0 and "tiny/0" in keyed.output


@pytest.mark.parametrize("rows", [[{"name": "m/0", "breaker_state": "open", "healthy": True}]])
def test_a_row_with_an_open_breaker_is_red(rows: list[dict[str, object]]) -> None:
    from blaze_ai.observability.status_cli import deployments_table

    table = deployments_table(rows)  # type: ignore[arg-type]
    assert table.rows[0].style == "red"
