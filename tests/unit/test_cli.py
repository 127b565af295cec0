"""The ``blaze`` command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from blaze_ai.cli import app


def test_models_lists_the_default() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    assert "smollm2" in result.output and "builtin:smollm2-135m-instruct" in result.output


def test_bad_config_exits_2_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text("server: {portt: 1}\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2
    assert "server.portt" in result.output
