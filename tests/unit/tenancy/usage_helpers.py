"""Helpers of the usage tests: records, a fresh PostgreSQL database per test, row counts."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from blaze_ai.tenancy import tables
from blaze_ai.tenancy.types import UsageRecord
from tests.postgres_server import PostgresServer

DAY_S = 86_400.0
T0 = 1_714_521_600.0  # 2024-05-01T00:00:00Z


def usage_record(n: int = 0, **fields: object) -> UsageRecord:
    """A successful chat request of team ``a``, key ``sk-blz-aaaaaaaa``, model ``tiny``."""
    values: dict[str, object] = {
        "created_at": T0 + n,
        "request_id": f"req-{n}",
        "key_id": "sk-blz-aaaaaaaa",
        "team": "a",
        "model": "tiny",
        "status": 200,
        "latency_ms": 10.0,
        "deployment": "tiny/0",
        "prompt_tokens": 3,
        "completion_tokens": 5,
    }
    values.update(fields)
    return UsageRecord(**values)  # type: ignore[arg-type]


def sqlite_engine(path: str, **connect_args: object) -> sa.Engine:
    """An engine on a SQLite file, with the tenancy tables created."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args=connect_args)
    tables.metadata.create_all(engine)
    return engine


@contextmanager
def fresh_postgres_database(server: PostgresServer) -> Iterator[sa.Engine]:
    """An engine on a new database of ``server`` with the tenancy tables; dropped after (the
    server is started again first if a test left it stopped)."""
    name = f"usage_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = sa.create_engine(sa.make_url(server.url).set(database=name))
    try:
        tables.metadata.create_all(engine)
        yield engine
    finally:
        engine.dispose()
        if server.process is None:
            server.start()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def count_rows(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(tables.usage)).scalar_one()
        )


async def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``condition()`` is true (checked every 10 ms), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
