"""The tenancy database: a sync SQLAlchemy engine on SQLite or PostgreSQL, and its migrations.

Several Blaze processes (and the ``blaze keys`` CLI) may share one database. On SQLite that
means WAL journaling (readers never block the writer), a busy timeout (a writer waits for the
other instead of failing at once) and write transactions that take the write lock when they
begin (``BEGIN IMMEDIATE``), so a read-then-write transaction cannot fail halfway. On
PostgreSQL, dead pooled connections are replaced before use (``pool_pre_ping``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from blaze_ai.errors import ConfigError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""Alembic's script folder, inside the package (shipped in the wheel)."""

BUSY_TIMEOUT_S = 15.0
"""Seconds a SQLite connection waits for another process's write lock before failing."""

MIGRATION_LOCK = 0x626C617A65_0C
"""The PostgreSQL advisory lock key held while migrating (any fixed 64-bit number)."""

_BEGIN = "blaze_sqlite_begin"  # execution option: the BEGIN statement SQLite transactions use


class Database:
    """A SQLAlchemy engine on the tenancy database (``auth.database_url``).

    Args:
        url: a SQLAlchemy URL. ``sqlite:///path`` (``~`` is expanded, the parent folder
            created) or ``postgresql+psycopg://user:password@host/db`` (plain ``postgresql://``
            is read as psycopg too).

    Raises:
        ConfigError: the URL cannot be parsed, or names another kind of database or a driver
            that is not installed.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError:
            raise ConfigError("auth.database_url is not a valid SQLAlchemy URL") from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._url = parsed
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"auth.database_url {self.url}: only SQLite and PostgreSQL are supported"
            )
        try:
            if parsed.get_backend_name() == "sqlite":
                self._url = _sqlite_file(parsed)
                self._engine = _sqlite_engine(self._url)
            else:
                self._engine = sa.create_engine(parsed, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"auth.database_url {self.url}: {exc}") from None

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (a connection pool)."""
        return self._engine

    @property
    def url(self) -> str:
        """The URL with any password masked (``***``), fit for logs and error messages."""
        return self._url.render_as_string(hide_password=True)

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is a SQLite file."""
        return self._engine.dialect.name == "sqlite"

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A connection in a transaction meant to write: committed when the block ends, rolled
        back when it raises. On SQLite it takes the write lock at once (``BEGIN IMMEDIATE``),
        waiting up to :data:`BUSY_TIMEOUT_S` for another writer.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or refused a write.
        """
        with self._engine.connect() as connection:
            connection.execution_options(**{_BEGIN: "BEGIN IMMEDIATE"})
            with connection.begin():
                yield connection

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection for reads (one consistent snapshot on SQLite), closed after the block.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached.
        """
        with self._engine.connect() as connection:
            yield connection

    def migrate(self) -> None:
        """Bring the schema to the newest revision (Alembic ``upgrade head``); a no-op when it is.

        Safe to call from several processes at once: the upgrade runs in one transaction that
        holds the write lock on SQLite, a transaction-scoped advisory lock on PostgreSQL, so
        the others wait, then find the schema current.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database cannot be reached or written.
        """
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
        with self.write() as connection:
            if not self.is_sqlite:
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            before = MigrationContext.configure(connection).get_current_revision()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
        if after != before:
            logger.info(
                "database migrated",
                extra={"database": self.url, "from_revision": before, "to_revision": after},
            )

    def dispose(self) -> None:
        """Close every pooled connection (the engine can still be used: it reconnects)."""
        self._engine.dispose()


def _sqlite_file(url: sa.URL) -> sa.URL:
    """Expand ``~`` in the file path and create its folder (not for ``:memory:``)."""
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return url
    path = Path(database).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return url.set(database=str(path))


WAL_ATTEMPTS = 50
"""Tries of ``PRAGMA journal_mode = WAL``, 0.1 s apart: SQLite answers "database is locked"
at once, without the busy timeout, while another connection is switching a new file to WAL."""


def _use_wal(cursor: Any) -> None:
    """Switch the database file to WAL (once per file; a no-op when it already is)."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.1)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    """A SQLite engine whose transactions SQLAlchemy begins itself (pysqlite's own BEGIN
    handling leaves DDL and SELECTs outside any transaction), with WAL, the busy timeout and
    foreign keys set on every new connection."""
    kwargs: dict[str, Any] = {"connect_args": {"timeout": BUSY_TIMEOUT_S}}
    if (url.database or ":memory:") == ":memory:":
        kwargs["poolclass"] = sa.pool.StaticPool  # one shared in-memory database
        kwargs["connect_args"]["check_same_thread"] = False
    engine = sa.create_engine(url, **kwargs)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _use_wal(cursor)
            cursor.execute("PRAGMA synchronous = NORMAL")  # WAL: no fsync per commit
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get(_BEGIN, "BEGIN"))

    return engine
