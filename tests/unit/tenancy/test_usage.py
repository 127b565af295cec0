"""The usage writer against real SQLite files and a real PostgreSQL: batches, outages, stop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from blaze_ai.config.tenancy import UsageConfig
from blaze_ai.tenancy import tables
from blaze_ai.tenancy.types import UsageRecord
from blaze_ai.tenancy.usage import UsageWriter
from tests.postgres_server import PostgresServer
from tests.unit.tenancy.usage_helpers import (
    count_rows,
    eventually,
    fresh_postgres_database,
    sqlite_engine,
    usage_record,
)

LOGGER = "blaze_ai.tenancy.usage"


@pytest.fixture
def pg_engine(postgres_server: PostgresServer) -> Iterator[sa.Engine]:
    with fresh_postgres_database(postgres_server) as engine:
        yield engine


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sqlite_engine(str(tmp_path / "blaze.db"))
    yield engine
    engine.dispose()


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.getMessage() == name]


async def test_written_in_batches_of_one_transaction_each(sqlite_file: sa.Engine) -> None:
    commits: list[int] = []
    sa.event.listen(sqlite_file, "commit", lambda _connection: commits.append(1))
    batches: list[int] = []

    def on_batch(records: Sequence[UsageRecord]) -> None:
        batches.append(len(records))

    # a long interval: only "batch_size records wait" can wake the writer in time
    config = UsageConfig(batch_size=100, flush_interval_s=60)
    writer = UsageWriter(sqlite_file, config, on_batch=on_batch)
    await writer.start()
    try:
        for n in range(250):
            writer.record(usage_record(n))
        await eventually(lambda: writer.written == 250)
        assert batches == [100, 100, 50]
        assert len(commits) == 3
        assert writer.pending == 0 and writer.dropped == 0
    finally:
        await writer.stop()
    assert count_rows(sqlite_file) == 250


async def test_a_few_records_are_written_at_the_interval(sqlite_file: sa.Engine) -> None:
    writer = UsageWriter(sqlite_file, UsageConfig(flush_interval_s=0.05))
    await writer.start()
    try:
        record = usage_record(7, cached_tokens=4, images=2, version="v3", error_type=None)
        writer.record(record)
        writer.record(usage_record(8, status=500, error_type="server_error", deployment=None))
        await eventually(lambda: writer.written == 2, timeout_s=2)
    finally:
        await writer.stop()
    with sqlite_file.connect() as connection:
        rows = connection.execute(sa.select(tables.usage).order_by(tables.usage.c.id)).mappings()
        first, second = list(rows)
    assert {k: v for k, v in first.items() if k != "id"} == {
        "created_at": record.created_at,
        "request_id": "req-7",
        "key_id": "sk-blz-aaaaaaaa",
        "team": "a",
        "model": "tiny",
        "version": "v3",
        "deployment": "tiny/0",
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "cached_tokens": 4,
        "images": 2,
        "latency_ms": 10.0,
        "status": 200,
        "error_type": None,
    }
    assert second["status"] == 500 and second["error_type"] == "server_error"
    assert second["deployment"] is None


async def test_record_costs_about_a_microsecond(sqlite_file: sa.Engine) -> None:
    writer = UsageWriter(sqlite_file, UsageConfig(queue_max=200_000))
    records = [usage_record(n) for n in range(100_000)]
    started = time.perf_counter()
    for record in records:
        writer.record(record)
    per_record_us = (time.perf_counter() - started) / len(records) * 1e6
    assert writer.pending == 100_000
    assert per_record_us < 5, f"{per_record_us:.2f} µs per record()"


async def test_flush_raises_and_keeps_the_records_while_the_table_is_missing(
    tmp_path: Path,
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    writer = UsageWriter(engine, UsageConfig(batch_size=2))
    for n in range(3):
        writer.record(usage_record(n))
    with pytest.raises(sa.exc.OperationalError):
        await writer.flush()
    assert writer.pending == 3 and writer.written == 0
    tables.metadata.create_all(engine)
    await writer.flush()
    assert writer.pending == 0 and count_rows(engine) == 3
    with engine.connect() as connection:
        ids = connection.execute(sa.select(tables.usage.c.request_id).order_by("id")).scalars()
        assert list(ids) == ["req-0", "req-1", "req-2"]  # the failed batch kept its place
    engine.dispose()


async def test_a_refused_row_is_dropped_and_the_rest_of_its_batch_written(
    pg_engine: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    writer = UsageWriter(pg_engine, UsageConfig())
    writer.record(usage_record(0))
    writer.record(usage_record(1, key_id=None))  # NOT NULL: the database refuses this row
    writer.record(usage_record(2, request_id="r" * 300, model="m" * 300))  # cut, not refused
    await writer.flush()
    assert (writer.written, writer.rejected, writer.pending) == (2, 1, 0)
    assert len(events(caplog, "usage_records_rejected")) == 1
    with pg_engine.connect() as connection:
        rows = connection.execute(sa.select(tables.usage).order_by("id")).mappings().all()
    assert [len(r["request_id"]) for r in rows] == [5, 128]
    assert len(rows[1]["model"]) == 256


async def test_an_on_batch_error_is_logged_and_the_batch_stays_written(
    sqlite_file: sa.Engine, caplog: pytest.LogCaptureFixture
) -> None:
    def on_batch(records: Sequence[UsageRecord]) -> None:
        raise RuntimeError("key store down")

    writer = UsageWriter(sqlite_file, UsageConfig(), on_batch=on_batch)
    writer.record(usage_record())
    await writer.flush()
    assert writer.written == 1 and writer.pending == 0 and count_rows(sqlite_file) == 1
    assert len(events(caplog, "usage_on_batch_failed")) == 1


async def test_postgres_outage_drops_the_overflow_and_writes_the_rest_after(
    pg_engine: sa.Engine, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    config = UsageConfig(queue_max=1_000, batch_size=100, flush_interval_s=0.05)
    writer = UsageWriter(pg_engine, config, max_backoff_s=0.2)
    await writer.start()
    try:
        writer.record(usage_record(-1))
        await eventually(lambda: writer.written == 1)
        records = [usage_record(n) for n in range(10_000)]
        postgres_server.stop()
        try:
            await asyncio.sleep(0.2)  # the writer wakes and finds nothing to write
            started = time.perf_counter()
            for record in records:
                writer.record(record)
            assert time.perf_counter() - started < 0.1
            assert (writer.pending, writer.dropped) == (1_000, 9_000)
            await eventually(lambda: len(events(caplog, "usage_write_failed")) == 1)
            for _ in range(50):  # the writer retries, backing off; the queue stays bounded
                await asyncio.sleep(0.02)
                writer.record(usage_record(20_000))
                assert writer.pending <= 1_000
            assert writer.written == 1 and writer.dropped == 9_050
        finally:
            postgres_server.start()
        await eventually(lambda: writer.pending == 0)
    finally:
        await writer.stop()
    assert writer.written == 1_001 and count_rows(pg_engine) == 1_001
    assert len(events(caplog, "usage_write_failed")) == 1
    assert len(events(caplog, "usage_dropped")) == 1
    (recovered,) = events(caplog, "usage_recovered")
    assert recovered.dropped == 9_050  # type: ignore[attr-defined]
    assert not events(caplog, "usage_lost")


async def test_stop_with_postgres_down_gives_up_and_logs_the_loss(
    pg_engine: sa.Engine, postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    writer = UsageWriter(pg_engine, UsageConfig(flush_interval_s=0.05), stop_timeout_s=2.0)
    await writer.start()
    postgres_server.stop()
    try:
        for n in range(300):
            writer.record(usage_record(n))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await writer.stop()
        assert time.monotonic() - started < 2.5
    finally:
        postgres_server.start()
    (lost,) = events(caplog, "usage_lost")
    assert (lost.lost, lost.in_doubt) == (300, 0)  # type: ignore[attr-defined]


def lock(path: Path) -> sqlite3.Connection:
    """Another process's write lock on the SQLite file, until ``rollback()``."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN EXCLUSIVE")
    return connection


async def test_a_locked_sqlite_file_delays_the_records_until_it_is_free(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "blaze.db"
    engine = sqlite_engine(str(path), timeout=0.05)  # wait 50 ms for a lock
    writer = UsageWriter(engine, UsageConfig(flush_interval_s=0.05), max_backoff_s=0.1)
    await writer.start()
    holder = lock(path)
    try:
        for n in range(10):
            writer.record(usage_record(n))
        await eventually(lambda: len(events(caplog, "usage_write_failed")) == 1)
        await asyncio.sleep(0.3)
        assert writer.written == 0 and writer.pending == 10
    finally:
        holder.rollback()
        holder.close()
    await eventually(lambda: writer.written == 10)
    await writer.stop()
    assert count_rows(engine) == 10
    assert len(events(caplog, "usage_write_failed")) == 1
    assert len(events(caplog, "usage_recovered")) == 1
    engine.dispose()


async def test_stop_is_bounded_while_a_write_waits_on_a_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    path = tmp_path / "blaze.db"
    engine = sqlite_engine(str(path), timeout=3.0)  # a write waits up to 3 s for the lock
    writer = UsageWriter(engine, UsageConfig(flush_interval_s=0.05), stop_timeout_s=0.3)
    await writer.start()
    holder = lock(path)
    try:
        writer.record(usage_record())
        await asyncio.sleep(0.2)  # the write is blocked in its thread now
        started = time.monotonic()
        await writer.stop()
        assert time.monotonic() - started < 1.0
        (lost,) = events(caplog, "usage_lost")
        assert (lost.lost, lost.in_doubt) == (0, 1)  # type: ignore[attr-defined]
    finally:
        holder.rollback()
        holder.close()
    await asyncio.sleep(0.1)  # the abandoned write then ends in its thread
    engine.dispose()
