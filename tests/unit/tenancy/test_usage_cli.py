"""``blaze usage`` on a real SQLite file: the table, its JSON form, filters and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from blaze_ai.cli import app
from blaze_ai.tenancy import tables
from blaze_ai.tenancy.usage_cli import NO_USAGE_TABLE, parse_time
from tests.unit.tenancy.usage_helpers import DAY_S, T0, sqlite_engine, usage_record

ROWS = [
    usage_record(0, team="a", model="tiny"),
    usage_record(1, team="a", model="tiny", status=499),
    usage_record(int(DAY_S), team="b", model="draw", images=2, status=500),
]


def write_usage(path: Path) -> None:
    engine = sqlite_engine(str(path))
    with engine.begin() as connection:
        connection.execute(
            tables.usage.insert(),
            [
                {f: getattr(r, f) for f in r.__dataclass_fields__}  # type: ignore[attr-defined]
                for r in ROWS
            ],
        )
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    database = tmp_path / "usage.db"
    write_usage(database)
    path = tmp_path / "blaze.yaml"
    path.write_text(f"auth:\n  database_url: 'sqlite:///{database}'\n")
    return path


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["usage", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_json_by_team_and_model(config: Path) -> None:
    code, out, _ = run("-c", str(config), "--group-by", "team,model", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["team"], r["model"], r["requests"]) for r in rows] == [
        ("a", "tiny", 2),
        ("b", "draw", 1),
    ]
    assert rows[0]["client_disconnects"] == 1 and rows[1]["errors"] == 1
    assert rows[1]["images"] == 2


def test_table_with_filters(config: Path) -> None:
    code, out, _ = run("--config", str(config), "--group-by", "day", "--team", "a")
    assert code == 0
    assert "2024-05-01" in out and "2024-05-02" not in out
    assert "requests" in out and "hang-ups" in out
    args = ("--since", "2024-05-02", "--until", str(T0 + 2 * DAY_S), "--json")
    code, out, _ = run("-c", str(config), *args)
    assert code == 0 and json.loads(out)[0]["requests"] == 1


def test_nothing_matches(config: Path) -> None:
    assert run("-c", str(config), "--model", "none")[:2] == (0, "no usage records match\n")
    assert run("-c", str(config), "--model", "none", "--json")[:2] == (0, "[]\n")


def test_database_from_the_environment_with_a_home_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    write_usage(tmp_path / "blaze.db")
    code, out, _ = run("--json", env={"BLAZE_AUTH__DATABASE_URL": "sqlite:///~/blaze.db"})
    assert code == 0 and json.loads(out)[0]["requests"] == 3


def test_no_usage_table_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{empty}").connect().close()
    code, _, err = run(env={"BLAZE_AUTH__DATABASE_URL": f"sqlite:///{empty}"})
    assert code == 2 and NO_USAGE_TABLE in err
    missing = tmp_path / "missing.db"
    code, _, err = run(env={"BLAZE_AUTH__DATABASE_URL": f"sqlite:///{missing}"})
    assert code == 2 and NO_USAGE_TABLE in err
    assert not missing.exists()  # looking does not create the file


@pytest.mark.parametrize(
    "args",
    [["--group-by", "team,week"], ["--since", "yesterday"], ["--until", "nan"]],
)
def test_bad_options_exit_2(config: Path, args: list[str]) -> None:
    code, _, err = run("-c", str(config), *args)
    assert code == 2
    assert args[0] in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1714521600", T0),
        ("1714521600.5", T0 + 0.5),
        ("2024-05-01", T0),
        ("2024-05-01T01:00", T0 + 3_600),
        ("2024-05-01T01:00Z", T0 + 3_600),
        ("2024-05-01T03:00+02:00", T0 + 3_600),
    ],
)
def test_parse_time(text: str, seconds: float) -> None:
    assert parse_time(text) == seconds


def test_parse_time_refuses_other_text() -> None:
    with pytest.raises(typer.BadParameter):
        parse_time("last week")
