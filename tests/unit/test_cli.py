"""The ``blaze`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
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


@pytest.mark.parametrize(("preset", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_omp_wait_policy_passive_unless_chosen(preset: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = (
        "import os, blaze_ai.cli as c; c.prefer_passive_omp(); print(os.environ['OMP_WAIT_POLICY'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == expected
