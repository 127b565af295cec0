"""The tenancy database: SQLite settings, URLs, and migrations (schema, idempotence,
concurrency) on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import setuptools
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from blaze_ai.errors import ConfigError
from blaze_ai.tenancy import db as db_module
from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.tables import api_keys, metadata, teams

ROOT = Path(__file__).resolve().parents[3]


def schema_differences(database: Database) -> list[object]:
    with database.read() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def revision(database: Database) -> str | None:
    with database.read() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_sqlite_uses_wal_a_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    database = Database(sqlite_url)
    with database.read() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys")
        }
    assert pragma == {"journal_mode": "wal", "busy_timeout": 15000, "foreign_keys": 1}
    database.migrate()
    orphan = {
        "key_id": "k",
        "secret_sha256": "0" * 64,
        "name": "n",
        "team": "nobody",
        "created_at": 0.0,
    }
    with pytest.raises(sa.exc.IntegrityError), database.write() as connection:
        connection.execute(api_keys.insert().values(orphan))
    database.dispose()


def test_sqlite_path_expands_home_and_creates_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    database = Database("sqlite:///~/.local/share/blaze/blaze.db")
    database.migrate()
    assert (tmp_path / ".local/share/blaze/blaze.db").is_file()
    assert database.url == f"sqlite:///{tmp_path}/.local/share/blaze/blaze.db"
    database.dispose()


def test_in_memory_sqlite_is_one_database(tmp_path: Path) -> None:
    database = Database("sqlite://")
    database.migrate()
    assert schema_differences(database) == []


def test_url_masks_the_password_and_postgresql_means_psycopg() -> None:
    database = Database("postgresql://blaze:hunter2@127.0.0.1:1/blaze")
    assert database.url == "postgresql+psycopg://blaze:***@127.0.0.1:1/blaze"
    assert database.engine.dialect.driver == "psycopg"
    assert database.engine.pool._pre_ping  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "url", ["not a url", "mysql://u:hunter2@h/db", "postgresql+nosuchdriver://h/db"]
)
def test_bad_urls_are_config_errors_without_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Database(url)
    assert "auth.database_url" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_migrated_schema_is_the_tables_module(database: Database) -> None:
    assert revision(database) == "0001"
    assert schema_differences(database) == []
    names = set(sa.inspect(database.engine).get_table_names())
    assert names == {"alembic_version", "teams", "api_keys", "usage"}
    indexes = {
        (table, tuple(index["column_names"]))
        for table in ("api_keys", "usage")
        for index in sa.inspect(database.engine).get_indexes(table)
    }
    assert indexes == {
        ("api_keys", ("team",)),
        ("usage", ("created_at",)),
        ("usage", ("key_id",)),
        ("usage", ("team",)),
    }
    (foreign_key,) = sa.inspect(database.engine).get_foreign_keys("api_keys")
    assert foreign_key["referred_table"] == "teams"
    assert foreign_key["constrained_columns"] == ["team"]


def test_migrating_again_changes_nothing(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with database.write() as connection:
        connection.execute(teams.insert().values(name="a", created_at=1.0))
    with caplog.at_level(logging.INFO, logger="blaze_ai.tenancy.db"):
        database.migrate()
    assert revision(database) == "0001"
    assert not [r for r in caplog.records if r.message == "database migrated"]
    with database.read() as connection:
        assert connection.execute(sa.select(teams.c.name)).scalars().all() == ["a"]


def test_first_migration_is_logged_with_a_masked_url(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(database_url)
    with caplog.at_level(logging.INFO, logger="blaze_ai.tenancy.db"):
        database.migrate()
    (record,) = [r for r in caplog.records if r.message == "database migrated"]
    assert record.to_revision == "0001"  # type: ignore[attr-defined]
    assert record.from_revision is None  # type: ignore[attr-defined]
    assert record.database == database.url  # type: ignore[attr-defined]
    database.dispose()


def test_concurrent_migrations_in_threads_all_succeed(database_url: str) -> None:
    databases = [Database(database_url) for _ in range(4)]
    barrier = threading.Barrier(len(databases))
    errors: list[BaseException] = []

    def migrate(database: Database) -> None:
        barrier.wait()
        try:
            database.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(d,)) for d in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert schema_differences(databases[0]) == []
    for database in databases:
        database.dispose()


def test_concurrent_migrations_in_processes_all_succeed(database_url: str) -> None:
    code = "import sys; from blaze_ai.tenancy.db import Database; Database(sys.argv[1]).migrate()"
    processes = [
        subprocess.Popen([sys.executable, "-c", code, database_url], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    failures = []
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        if process.returncode:
            failures.append(stderr.decode()[-2000:])
    assert failures == []
    database = Database(database_url)
    assert revision(database) == "0001"
    assert schema_differences(database) == []
    database.dispose()


def test_a_failed_write_is_rolled_back(database: Database) -> None:
    with pytest.raises(RuntimeError), database.write() as connection:
        connection.execute(teams.insert().values(name="a", created_at=1.0))
        raise RuntimeError("boom")
    with database.read() as connection:
        assert connection.execute(sa.select(teams.c.name)).all() == []


def test_the_migrations_ship_in_the_wheel() -> None:
    """``packages.find`` (pyproject.toml) finds packages by their ``__init__.py``: the
    migrations folders must be packages for their ``.py`` files to reach the wheel."""
    found = setuptools.find_packages(str(ROOT / "src"))
    assert {"blaze_ai.tenancy.migrations", "blaze_ai.tenancy.migrations.versions"} <= set(found)
    assert db_module.MIGRATIONS == ROOT / "src/blaze_ai/tenancy/migrations"
    assert (db_module.MIGRATIONS / "versions/0001_initial.py").is_file()
