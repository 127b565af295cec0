"""Tenancy fixtures: a fresh database per test, a SQLite file or a PostgreSQL database of its
own on the session's server, migrated, and a key store on it with a fake clock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.keys import KeyStore
from tests.fakes import FakeClock
from tests.postgres_server import PostgresServer

START_S = 1_700_000_000.0


@pytest.fixture
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file (not created yet) in a folder of its own."""
    return f"sqlite:///{tmp_path_factory.mktemp('db')}/blaze.db"


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A new, empty PostgreSQL database on the session's server (dropped after the test)."""
    name = f"blaze_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        postgres_server.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    yield sa.make_url(postgres_server.url).set(database=name).render_as_string(False)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database, once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The database of ``database_url``, migrated."""
    db = Database(database_url)
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """Unix seconds that move only when told to."""
    return FakeClock(START_S)


@pytest.fixture
def store(database: Database, clock: FakeClock) -> KeyStore:
    """A key store on ``database`` whose clock is ``clock``."""
    return KeyStore(database, clock=clock.now)
