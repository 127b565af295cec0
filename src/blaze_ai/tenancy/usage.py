"""Usage accounting: one row per finished request in the ``usage`` table, written in batches
off the request path by :class:`UsageWriter`, and :func:`summarize`, their sums per group
(defined in ``tenancy/usage_summary.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from blaze_ai.config.tenancy import UsageConfig
from blaze_ai.resilience.tasks import cancel_and_wait
from blaze_ai.tenancy import tables
from blaze_ai.tenancy.types import UsageRecord
from blaze_ai.tenancy.usage_summary import summarize

__all__ = ["UsageWriter", "summarize"]

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0
"""Longest wait between two retries while the database fails."""

STOP_TIMEOUT_S = 5.0
"""Longest ``stop()`` waits for the last records to be written."""

_REJECTED = (sa.exc.IntegrityError, sa.exc.DataError)
"""Errors of the rows themselves: retrying the same batch would fail again."""

_LIMITS = tuple(
    (column.name, column.type.length)
    for column in tables.usage.columns
    if isinstance(column.type, sa.String) and column.type.length
)
"""The string columns and their lengths; a longer value is cut (PostgreSQL would refuse it)."""


class UsageWriter:
    """Queues usage records in memory and writes them to the ``usage`` table in batches.

    ``record()`` is all the request path does: an append to a bounded deque (well under a
    microsecond). The task ``start()`` creates wakes every ``flush_interval_s``, or as soon as
    ``batch_size`` records wait, and writes what is queued, ``batch_size`` records per
    transaction (one Core ``insert()`` executemany), in a worker thread: the event loop never
    waits on the database.

    When a write fails (PostgreSQL down, SQLite locked), its batch goes back to the front of the
    queue and the writer retries after a back-off: ``flush_interval_s``, doubling up to
    ``max_backoff_s``. Once the database answers again, everything queued is written, in order.

    The queue holds at most ``queue_max`` records, counting the batch being written. When it is
    full, **new records are dropped** (counted in ``dropped``) and the queued ones kept: nothing
    queued is ever discarded or reordered, so what an outage loses is one contiguous stretch of
    time, its end, and the records kept are those of the requests nearest the failure.

    Logged once per outage (which ends when the writer has caught up: a write succeeded and at
    most one batch is left): ``usage_write_failed`` (warning, the first failed write),
    ``usage_dropped`` (warning, the first record dropped) and ``usage_recovered`` (info, with
    the records dropped during the outage). Rows the database refuses as such (an integrity or
    data error) are retried one by one, and the refused ones dropped (``rejected``,
    ``usage_records_rejected``). Strings longer than their column are cut.

    ``record()`` must be called from the event loop's thread (the one ``start()`` ran on).

    Args:
        engine: the database (``auth.database_url``); the ``usage`` table must exist.
        config: ``queue_max``, ``batch_size`` and ``flush_interval_s`` (seconds).
        on_batch: called in the worker thread with the records of each batch once committed
            (the key store updates ``last_used_at`` with it); an exception it raises is logged,
            the batch stays written.
        max_backoff_s: longest wait between two retries, seconds.
        stop_timeout_s: longest ``stop()`` waits for the last write, seconds.

    Attributes:
        dropped: records dropped because the queue was full, since creation.
        written: records written, since creation.
        rejected: records the database refused, since creation.
    """

    def __init__(
        self,
        engine: sa.Engine,
        config: UsageConfig,
        *,
        on_batch: Callable[[Sequence[UsageRecord]], None] | None = None,
        max_backoff_s: float = MAX_BACKOFF_S,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        self.dropped = 0
        self.written = 0
        self.rejected = 0
        self._engine = engine
        self._on_batch = on_batch
        self._queue_max = config.queue_max
        self._batch_size = config.batch_size
        self._sqlite = engine.dialect.name == "sqlite"
        self._interval_s = config.flush_interval_s
        self._max_backoff_s = max(max_backoff_s, config.flush_interval_s)
        self._stop_timeout_s = stop_timeout_s
        self._queue: deque[UsageRecord] = deque()
        self._in_flight = 0
        self._in_doubt = 0  # records of writes cut short by a cancellation
        self._lock = asyncio.Lock()  # one batch in flight at a time
        self._wake = asyncio.Event()  # batch_size records wait, or stop
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._outage = _Outage()

    @property
    def pending(self) -> int:
        """Records not written yet: queued plus the batch being written (at most
        ``queue_max``)."""
        return len(self._queue) + self._in_flight

    def record(self, record: UsageRecord) -> None:
        """Queue ``record`` for writing; never blocks, never raises. When the queue is full the
        record is dropped and counted in ``dropped``."""
        queue = self._queue
        if len(queue) + self._in_flight >= self._queue_max:
            self._drop()
            return
        queue.append(record)
        if len(queue) >= self._batch_size:
            self._wake.set()

    async def start(self) -> None:
        """Start the background writer (a no-op when it runs already)."""
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def stop(self) -> None:
        """Write what is queued and stop the writer, within ``stop_timeout_s`` seconds.

        With the database down, one last write is tried; after it fails, or when the time is
        up (a write blocked on a locked SQLite file), the writer gives up and logs
        ``usage_lost``: ``lost``, the records not written, and ``in_doubt``, those of a write
        cut short, which its thread may still commit after ``stop()`` returned.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        self._wake.set()
        try:
            await asyncio.wait({task}, timeout=self._stop_timeout_s)
        finally:
            await cancel_and_wait(task)
            if self.pending or self._in_doubt:
                logger.warning(
                    "usage_lost",
                    extra={
                        "lost": self.pending,
                        "in_doubt": self._in_doubt,
                        "dropped_total": self.dropped,
                    },
                )

    async def flush(self) -> None:
        """Write every record queued now, ``batch_size`` per transaction (waiting for the
        batch the writer may have in flight).

        Raises:
            sqlalchemy.exc.SQLAlchemyError, OSError: a write failed; its records stay queued.
        """
        remaining = self.pending
        while remaining > 0 and (self._queue or self._in_flight):
            remaining -= await self._write_batch()  # 0: it waited for the batch in flight

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if failures:  # back off; only stop cuts the wait short
                await _wait(self._stopping, self._backoff_s(failures))
            else:
                await _wait(self._wake, self._interval_s)
                self._wake.clear()
            if self._stopping.is_set():
                break
            failures = 0 if await self._flush_logged() else failures + 1
        await self._flush_logged()  # the last write, at stop

    async def _flush_logged(self) -> bool:
        """``flush()``; False when a write failed (already logged, once per outage)."""
        try:
            await self.flush()
        except Exception:  # logged by _write_batch, once per outage; the writer keeps running
            return False
        return True

    def _backoff_s(self, failures: int) -> float:
        return min(self._max_backoff_s, self._interval_s * 2 ** min(failures - 1, 30))

    async def _write_batch(self) -> int:
        """Write the first ``batch_size`` queued records; returns how many were taken.

        Raises the write's error after putting the records back at the front of the queue."""
        async with self._lock:
            count = min(self._batch_size, len(self._queue))
            if not count:
                return 0
            batch = [self._queue.popleft() for _ in range(count)]
            self._in_flight = count
            try:
                accepted = await asyncio.to_thread(self._insert, batch)
            except asyncio.CancelledError:
                self._in_doubt += count  # its thread goes on: written there, or lost
                raise
            except Exception as exc:
                self._queue.extendleft(reversed(batch))
                self._outage.failed(exc, pending=self.pending)
                raise
            finally:
                self._in_flight = 0
            self.written += accepted
            self.rejected += count - accepted
            if self.pending <= self._batch_size:
                self._outage.caught_up(dropped_total=self.dropped)
            return count

    def _insert(self, batch: list[UsageRecord]) -> int:
        """Insert ``batch`` in one transaction (worker thread); returns the rows accepted."""
        rows = [_row(record) for record in batch]
        accepted: Sequence[UsageRecord] = batch
        try:
            with self._engine.begin() as connection:
                if self._sqlite:
                    connection.exec_driver_sql(_SQLITE_INSERT, (_json_rows(rows),))
                else:
                    connection.execute(tables.usage.insert(), rows)
        except _REJECTED as exc:
            accepted = self._insert_each(batch, rows, exc)
        if self._on_batch is not None and accepted:
            try:
                self._on_batch(accepted)
            except Exception:
                logger.exception("usage_on_batch_failed", extra={"records": len(accepted)})
        return len(accepted)

    def _insert_each(
        self, batch: list[UsageRecord], rows: list[dict[str, Any]], error: Exception
    ) -> list[UsageRecord]:
        """Insert the rows one by one (a savepoint each, one transaction), skipping refused
        ones; returns the records accepted."""
        accepted = []
        with self._engine.begin() as connection:
            for record, row in zip(batch, rows, strict=True):
                try:
                    with connection.begin_nested():
                        connection.execute(tables.usage.insert(), row)
                except _REJECTED:
                    continue
                accepted.append(record)
        logger.warning(
            "usage_records_rejected",
            extra={
                "rejected": len(batch) - len(accepted),
                "error": type(error).__name__,
                "detail": _detail(error),
            },
        )
        return accepted

    def _drop(self) -> None:
        self.dropped += 1
        self._outage.dropped_one(queue_max=self._queue_max, dropped_total=self.dropped)


class _Outage:
    """What the writer logs once per outage: first failure, first drop, recovery."""

    def __init__(self) -> None:
        self.since: float | None = None
        self.dropped = 0
        self.failures = 0

    def _begin(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def failed(self, error: Exception, *, pending: int) -> None:
        self._begin()
        self.failures += 1
        if self.failures == 1:
            logger.warning(
                "usage_write_failed",
                extra={
                    "error": type(error).__name__,
                    "detail": _detail(error),
                    "pending": pending,
                },
            )

    def dropped_one(self, *, queue_max: int, dropped_total: int) -> None:
        self._begin()
        self.dropped += 1
        if self.dropped == 1:
            logger.warning(
                "usage_dropped",
                extra={"queue_max": queue_max, "dropped_total": dropped_total},
            )

    def caught_up(self, *, dropped_total: int) -> None:
        if self.since is None:
            return
        logger.info(
            "usage_recovered",
            extra={
                "dropped": self.dropped,
                "dropped_total": dropped_total,
                "failed_writes": self.failures,
                "down_s": round(time.monotonic() - self.since, 3),
            },
        )
        self.since, self.dropped, self.failures = None, 0, 0


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    """Wait until ``event`` is set or ``timeout_s`` seconds have passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


def _detail(error: Exception) -> str:
    """The first line of the driver's message (SQLAlchemy's own adds the statement and all
    the batch's parameters), at most 200 characters."""
    original = getattr(error, "orig", None) or error
    return str(original).strip().split("\n", 1)[0][:200]


_COLUMNS = tuple(c.name for c in tables.usage.columns if c.name != "id")

_SQLITE_INSERT = (
    f"INSERT INTO usage ({', '.join(_COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_COLUMNS)))
    + " FROM json_each(?)"
)
"""A batch into SQLite as one statement over one JSON parameter. ``executemany`` steps once
per row, and each step releases and takes back the GIL: under load every take waits for the
event loop's thread, and a batch of 500 cost about 50 µs of CPU per record there (4 µs
alone); one step costs about a third of it, and none of the event loop's time."""


def _json_rows(rows: list[dict[str, Any]]) -> str:
    """The rows as a JSON array of arrays, in :data:`_COLUMNS` order."""
    return json.dumps([[row[name] for name in _COLUMNS] for row in rows])


def _row(record: UsageRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "created_at": record.created_at,
        "request_id": record.request_id,
        "key_id": record.key_id,
        "team": record.team,
        "model": record.model,
        "version": record.version,
        "deployment": record.deployment,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cached_tokens": record.cached_tokens,
        "images": record.images,
        "latency_ms": record.latency_ms,
        "status": record.status,
        "error_type": record.error_type,
    }
    for name, length in _LIMITS:
        value = row[name]
        if value is not None and len(value) > length:
            row[name] = value[:length]
    return row
