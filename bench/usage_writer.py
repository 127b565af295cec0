"""Usage writer costs: ``record()`` on the request path, and batch inserts to the database.

1. ``record()``: microseconds per call, queueing into an idle writer (no database touched);
2. ``flush``: records/s of ``UsageWriter.flush()`` in batches of ``--batch`` (500, the
   default ``usage.batch_size``), one transaction each, on a SQLite file in a temporary folder
   (and on PostgreSQL with ``--postgres-url``); the baseline in the same run is a bare
   ``executemany`` of ready rows through the sqlite3 module, with the same one commit per batch.

Run from the repository root::

    .venv/bin/python bench/usage_writer.py [--records 20000] [--batch 500]
        [--postgres-url postgresql+psycopg://user@127.0.0.1:5432/db]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from blaze_ai.config.tenancy import UsageConfig
from blaze_ai.tenancy import tables
from blaze_ai.tenancy.types import UsageRecord
from blaze_ai.tenancy.usage import UsageWriter


def records(count: int) -> list[UsageRecord]:
    now = time.time()
    return [
        UsageRecord(
            created_at=now + n / 1000,
            request_id=f"chatcmpl-{n:024x}",
            key_id="sk-blz-a1b2c3d4",
            team="research",
            model="smollm2",
            status=200,
            latency_ms=123.4,
            deployment="smollm2/0",
            prompt_tokens=52,
            completion_tokens=211,
        )
        for n in range(count)
    ]


def bench_record(count: int) -> float:
    """Microseconds per ``record()`` call."""
    engine = sa.create_engine("sqlite://")
    writer = UsageWriter(engine, UsageConfig(queue_max=count + 1))
    batch = records(count)
    started = time.perf_counter()
    for record in batch:
        writer.record(record)
    return (time.perf_counter() - started) / count * 1e6


async def bench_flush(engine: sa.Engine, count: int, batch_size: int) -> float:
    """Records per second written by ``flush()``."""
    tables.metadata.create_all(engine)
    writer = UsageWriter(engine, UsageConfig(queue_max=count, batch_size=batch_size))
    for record in records(batch_size):  # warm-up: connection, statement cache
        writer.record(record)
    await writer.flush()
    for record in records(count):
        writer.record(record)
    started = time.perf_counter()
    await writer.flush()
    return count / (time.perf_counter() - started)


def bench_sqlite3(path: Path, count: int, batch_size: int) -> float:
    """Records per second of a bare sqlite3 ``executemany`` of ready tuples."""
    engine = sa.create_engine(f"sqlite:///{path}")
    tables.metadata.create_all(engine)
    engine.dispose()
    columns = [c.name for c in tables.usage.columns if c.name != "id"]
    sql = f"INSERT INTO usage ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    rows = [tuple(getattr(r, c) for c in columns) for r in records(count)]
    connection = sqlite3.connect(path)
    started = time.perf_counter()
    for start in range(0, count, batch_size):
        connection.executemany(sql, rows[start : start + batch_size])
        connection.commit()
    elapsed = time.perf_counter() - started
    connection.close()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres-url", default=None)
    args = parser.parse_args()

    print(f"record(): {bench_record(1_000_000):.2f} µs per call")
    with tempfile.TemporaryDirectory() as folder:
        base = bench_sqlite3(Path(folder) / "bare.db", args.records, args.batch)
        engine = sa.create_engine(f"sqlite:///{Path(folder) / 'blaze.db'}")
        rate = asyncio.run(bench_flush(engine, args.records, args.batch))
        engine.dispose()
    print(f"sqlite3 executemany (baseline): {base:,.0f} records/s ({1e6 / base:.1f} µs/record)")
    print(
        f"UsageWriter.flush, SQLite: {rate:,.0f} records/s ({1e6 / rate:.1f} µs/record), "
        f"{rate / base:.2f}x baseline"
    )
    if args.postgres_url:
        engine = sa.create_engine(args.postgres_url)
        rate = asyncio.run(bench_flush(engine, args.records, args.batch))
        engine.dispose()
        print(f"UsageWriter.flush, PostgreSQL: {rate:,.0f} records/s ({1e6 / rate:.1f} µs/record)")


if __name__ == "__main__":
    main()
