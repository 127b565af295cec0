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


def test_status_reads_a_server_that_runs_with_metrics_off(
    tmp_path: Path, tiny_config: Path
) -> None:
    """Review of issue 13: with metrics off the server has no /admin/dashboard (404, not the
    400 the command looked for), and ``blaze status`` answered "answered 404"."""
    config = tiny_config.read_text() + "metrics:\n  enabled: false\n"
    with start(tmp_path / "no-metrics", config) as server:
        result = CliRunner().invoke(app, ["status", "--url", server.base_url], env=WIDE)
        assert result.exit_code == 0, result.output
        assert "tiny/0" in result.output and "digits/0" in result.output


def test_status_watch_keeps_going_while_the_server_restarts(
    tiny_server: BlazeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of issue 13: ``--watch`` ended at the first read that failed (a restart)."""
    from blaze_ai.observability import status_cli

    real_fetch = status_cli.fetch
    reads: list[str] = []

    def fetch(client: object) -> list[dict[str, object]]:
        reads.append("read")
        if len(reads) == 3:
            raise status_cli.StatusError("cannot reach the server: restarting")
        if len(reads) == 4:
            raise KeyboardInterrupt
        return real_fetch(client)  # type: ignore[arg-type]

    monkeypatch.setattr(status_cli, "fetch", fetch)
    monkeypatch.setattr(status_cli.time, "sleep", lambda _: None)
    args = ["status", "--url", tiny_server.base_url, "--watch", "1"]
    result = CliRunner().invoke(app, args, env=WIDE)
    assert result.exit_code == 0, result.output
    assert len(reads) == 4  # the failed third read did not end the command
    assert "restarting" in result.output and "tiny/0" in result.output  # the last table, stale


@pytest.mark.parametrize("body", ['{"deployments": [1, "x"]}', '{"data": "x"}', "[]"])
def test_status_says_a_server_is_not_blaze_when_its_rows_are_not_deployments(
    tmp_path: Path, body: str
) -> None:
    """Review of issue 13: a JSON answer whose rows were not objects ended in a traceback."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = CliRunner().invoke(app, ["status", "--url", url])
        assert result.exit_code == 1 and "is not a Blaze server" in result.output
    finally:
        server.shutdown()
        server.server_close()
