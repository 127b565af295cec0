"""``blaze keys`` and ``blaze teams``: the key and team lifecycles through the command line,
on SQLite and PostgreSQL; the secret printed once only; errors as ``error: ...`` and status 2."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from blaze_ai.cli import app
from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.keys import KeyStore, key_id_of
from blaze_ai.tenancy.types import Limits

ENV = "BLAZE_AUTH__DATABASE_URL"


def blaze(url: str, *args: str) -> Result:
    return CliRunner(env={ENV: url}).invoke(app, list(args))


def ok(url: str, *args: str) -> str:
    result = blaze(url, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def ok_json(url: str, *args: str) -> Any:
    return json.loads(ok(url, *args, "--json"))


@contextmanager
def store_of(url: str) -> Iterator[KeyStore]:
    database = Database(url)
    try:
        yield KeyStore(database)
    finally:
        database.dispose()


def test_key_lifecycle(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        created = ok_json(
            database_url,
            *("keys", "create", "--team", "acme", "--name", "ci", "-m", "gpt-*", "-m", "tiny"),
            *("--rpm", "10", "--tpm", "none", "--expires-in-days", "30"),
            *("--metadata", '{"owner": "ops"}'),
        )
    secret, key = created["secret"], created["key"]
    assert key_id_of(secret) == key["key_id"]
    assert key["models"] == ["gpt-*", "tiny"] and key["status"] == "active"
    assert key["limits"] == {"rpm": 10, "tpm": None, "max_parallel": None}
    assert key["metadata"] == {"owner": "ops"} and key["expires_at"] > key["created_at"]
    with store_of(database_url) as store:
        match = store.find(secret)
    assert match is not None and match.key.key_id == key["key_id"]

    key_id = key["key_id"]
    outputs = [
        ok(database_url, "keys", "list"),
        ok(database_url, "keys", "list", "--team", "acme", "--json"),
        ok(database_url, "keys", "show", key_id),
        ok(database_url, "keys", "show", key_id, "--json"),
    ]
    assert all(key_id in text for text in outputs)
    updated = ok_json(database_url, "keys", "update", key_id, "--rpm", "none", "--disable")
    assert updated["limits"]["rpm"] is None and updated["status"] == "disabled"
    assert ok_json(database_url, "keys", "update", key_id, "--enable")["status"] == "active"
    assert ok_json(database_url, "keys", "update", key_id, "--all-models")["models"] == []
    renamed = ok_json(database_url, "keys", "update", key_id, "-n", "cd", "--no-expiry")
    assert renamed["name"] == "cd" and renamed["expires_at"] is None
    revoked = ok_json(database_url, "keys", "revoke", key_id)
    assert revoked["status"] == "revoked" and revoked["revoked_at"] is not None
    assert ok_json(database_url, "keys", "list") == []
    outputs.append(ok(database_url, "keys", "list", "--all"))
    assert key_id in outputs[-1]
    assert not [text for text in outputs if secret[15:] in text]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert secret[15:] not in logged


def test_create_prints_the_secret_once_with_a_warning(sqlite_url: str) -> None:
    text = ok(sqlite_url, "keys", "create", "--team", "acme")
    (secret,) = [word for word in text.split() if key_id_of(word)]
    assert text.count(secret[15:]) == 1
    assert f"Created API key {secret[:15]}" in text
    assert "only time the secret is shown" in text


def test_listing_into_a_pipe_keeps_each_key_on_one_line(sqlite_url: str) -> None:
    for name in ("a rather long key name for the table", "b"):
        ok(sqlite_url, "keys", "create", "--team", "a-team-with-a-long-name", "--name", name)
    ids = [key["key_id"] for key in ok_json(sqlite_url, "keys", "list")]
    lines = ok(sqlite_url, "keys", "list").splitlines()
    for key_id in ids:
        (line,) = [line for line in lines if key_id in line]
        assert "a-team-with-a-long-name" in line and "unlimited" in line


def test_team_lifecycle(database_url: str) -> None:
    team = ok_json(database_url, "teams", "create", "acme", "--tpm", "1000", "--metadata", "{}")
    assert team["limits"] == {"rpm": None, "tpm": 1000, "max_parallel": None}
    assert team["live_keys"] == 0
    key_id = ok_json(database_url, "keys", "create", "-t", "acme")["key"]["key_id"]
    assert ok_json(database_url, "teams", "show", "acme")["live_keys"] == 1
    updated = ok_json(database_url, "teams", "update", "acme", "--rpm", "5", "--disable")
    assert updated["limits"]["rpm"] == 5 and updated["disabled"] is True
    assert [t["name"] for t in ok_json(database_url, "teams", "list")] == ["acme"]
    assert "acme" in ok(database_url, "teams", "list") + ok(database_url, "teams", "show", "acme")
    refused = blaze(database_url, "teams", "delete", "acme")
    assert refused.exit_code == 2 and "1 live key;" in refused.stderr
    ok(database_url, "keys", "revoke", key_id)
    assert "Deleted team 'acme'" in ok(database_url, "teams", "delete", "acme")
    assert ok_json(database_url, "teams", "list") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "show", "sk-blz-nosuchid"], "error: API key 'sk-blz-nosuchid' not found"),
        (["keys", "update", "sk-blz-nosuchid", "--rpm", "1"], "not found"),
        (["keys", "revoke", "sk-blz-nosuchid"], "not found"),
        (["keys", "update", "sk-blz-nosuchid"], "error: nothing to change"),
        (["keys", "create", "-t", "t", "--rpm", "ten"], "error: --rpm must be an integer"),
        (["keys", "create", "-t", "t", "--rpm", "0"], "error: rpm must be an integer >= 1"),
        (["keys", "create", "-t", "t", "--max-parallel", "x"], "--max-parallel must be"),
        (["keys", "create", "-t", ""], "error: team must be 1 to 128 characters"),
        (["keys", "create", "-t", "t", "--metadata", "{bad"], "--metadata is not valid JSON"),
        (["keys", "create", "-t", "t", "--metadata", "[1]"], "metadata must be a JSON object"),
        (["keys", "create", "-t", "t", "--expires-in-days", "0"], "must be more than 0"),
        (["keys", "update", "k", "-m", "a", "--all-models"], "contradict"),
        (["teams", "show", "nosuch"], "error: team 'nosuch' not found"),
        (["teams", "delete", "nosuch"], "not found"),
        (["teams", "update", "nosuch"], "nothing to change"),
        (["teams", "update", "nosuch", "--tpm", "none"], "not found"),
        (["teams", "create", "bad\x07name"], "printable"),
    ],
)
def test_errors_exit_2_with_one_line(sqlite_url: str, args: list[str], message: str) -> None:
    result = blaze(sqlite_url, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.output


def test_a_team_created_twice_is_a_conflict(sqlite_url: str) -> None:
    ok(sqlite_url, "teams", "create", "acme")
    result = blaze(sqlite_url, "teams", "create", "acme")
    assert result.exit_code == 2 and result.stderr == "error: team 'acme' exists already\n"


def test_an_unreachable_database_is_an_error_without_the_password() -> None:
    result = blaze("postgresql+psycopg://blaze:hunter2@127.0.0.1:1/blaze", "keys", "list")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: database postgresql+psycopg://blaze:***@127.0.0.1:1")
    assert "hunter2" not in result.output


def test_the_database_comes_from_the_config_file_unless_the_environment_says(
    tmp_path: Path,
) -> None:
    config = tmp_path / "blaze.yaml"
    config.write_text(f"auth:\n  database_url: sqlite:///{tmp_path}/from-file.db\n")
    result = CliRunner().invoke(app, ["keys", "create", "-t", "t", "-c", str(config)])
    assert result.exit_code == 0, result.output
    with store_of(f"sqlite:///{tmp_path}/from-file.db") as store:
        assert len(store.list_keys()) == 1
    env_url = f"sqlite:///{tmp_path}/from-env.db"
    ok(env_url, "keys", "create", "-t", "t", "--config", str(config))
    with store_of(env_url) as store:
        assert len(store.list_keys()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("auth: {database_ur: x}\n")
    result = CliRunner().invoke(app, ["keys", "list", "-c", str(bad)])
    assert result.exit_code == 2 and "auth.database_ur" in result.stderr


def test_the_installed_command(sqlite_url: str) -> None:
    blaze_bin = Path(sys.executable).parent / "blaze"
    env = {**os.environ, ENV: sqlite_url}
    run = subprocess.run(
        [str(blaze_bin), "keys", "create", "--team", "ops", "--max-parallel", "2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    created = json.loads(run.stdout)
    with store_of(sqlite_url) as store:
        match = store.find(created["secret"])
    assert match is not None and match.key.limits == Limits(max_parallel=2)
    shown = subprocess.run(
        [str(blaze_bin), "keys", "show", created["key"]["key_id"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and created["secret"][15:] not in shown.stdout


def test_the_blaze_command_does_not_import_the_database_layer_until_used() -> None:
    code = "import sys, blaze_ai.cli; print('sqlalchemy' in sys.modules, 'alembic' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["False", "False"]
