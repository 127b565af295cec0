"""Usage sums per group, the same on a SQLite file and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from blaze_ai.config.tenancy import UsageConfig
from blaze_ai.errors import InvalidRequestError
from blaze_ai.tenancy.usage import UsageWriter, summarize
from blaze_ai.tenancy.usage_summary import METRICS
from tests.postgres_server import PostgresServer
from tests.unit.tenancy.usage_helpers import (
    DAY_S,
    T0,
    fresh_postgres_database,
    sqlite_engine,
    usage_record,
)

RECORDS = [
    # day 1, 00:00:00 and 00:59:59 (one hour), 01:00:00 (the next)
    usage_record(0, team="a", model="tiny", prompt_tokens=10, completion_tokens=20),
    usage_record(3_599, team="a", model="tiny", status=500, error_type="server_error"),
    usage_record(3_600, team="a", model="big", status=499, completion_tokens=2),
    # day 2
    usage_record(int(DAY_S), team="b", model="tiny", cached_tokens=7, latency_ms=30.0),
    usage_record(int(DAY_S) + 1, team="b", model="tiny", status=429, key_id="sk-blz-bbbbbbbb"),
    usage_record(int(DAY_S) + 2, team="b", model="draw", images=4, prompt_tokens=0),
]


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_server: PostgresServer
) -> AsyncIterator[sa.Engine]:
    if request.param == "sqlite":
        database = sqlite_engine(str(tmp_path / "blaze.db"))
        yield await _filled(database)
        database.dispose()
    else:
        with fresh_postgres_database(postgres_server) as database:
            yield await _filled(database)


async def _filled(engine: sa.Engine) -> sa.Engine:
    writer = UsageWriter(engine, UsageConfig())
    for record in RECORDS:
        writer.record(record)
    await writer.flush()
    return engine


def test_one_total_without_groups(engine: sa.Engine) -> None:
    (total,) = summarize(engine)
    assert list(total) == list(METRICS)
    assert total == {
        "requests": 6,
        "prompt_tokens": 10 + 3 * 4 + 0,
        "completion_tokens": 20 + 5 * 3 + 2 + 5,
        "cached_tokens": 7,
        "images": 4,
        "errors": 2,  # 500 and 429; the 499 is a hang-up, not an error
        "client_disconnects": 1,
        "avg_latency_ms": pytest.approx((5 * 10.0 + 30.0) / 6),
    }


def test_by_team_and_model_ordered(engine: sa.Engine) -> None:
    rows = summarize(engine, group_by=["team", "model"])
    assert [(r["team"], r["model"], r["requests"]) for r in rows] == [
        ("a", "big", 1),
        ("a", "tiny", 2),
        ("b", "draw", 1),
        ("b", "tiny", 2),
    ]
    a_tiny = rows[1]
    assert (a_tiny["errors"], a_tiny["client_disconnects"], a_tiny["prompt_tokens"]) == (1, 0, 13)
    assert rows[0]["client_disconnects"] == 1 and rows[0]["errors"] == 0


def test_utc_days_and_hours(engine: sa.Engine) -> None:
    days = summarize(engine, group_by=["day"])
    assert [(r["day"], r["requests"]) for r in days] == [("2024-05-01", 3), ("2024-05-02", 3)]
    hours = summarize(engine, team="a", group_by=["hour"])
    assert [(r["hour"], r["requests"]) for r in hours] == [
        ("2024-05-01T00:00Z", 2),
        ("2024-05-01T01:00Z", 1),
    ]


def test_by_status_and_key(engine: sa.Engine) -> None:
    rows = summarize(engine, group_by=["status"])
    assert [(r["status"], r["requests"]) for r in rows] == [(200, 3), (429, 1), (499, 1), (500, 1)]
    rows = summarize(engine, group_by=["key_id", "key_id"])
    assert [(r["key_id"], r["requests"]) for r in rows] == [
        ("sk-blz-aaaaaaaa", 5),
        ("sk-blz-bbbbbbbb", 1),
    ]


def test_filters(engine: sa.Engine) -> None:
    assert summarize(engine, team="b")[0]["requests"] == 3
    assert summarize(engine, model="tiny", team="b")[0]["cached_tokens"] == 7
    assert summarize(engine, key_id="sk-blz-bbbbbbbb")[0]["errors"] == 1
    # since is inclusive, until exclusive
    assert summarize(engine, since=T0 + 3_599, until=T0 + DAY_S)[0]["requests"] == 2
    assert summarize(engine, since=T0 + DAY_S + 2)[0]["images"] == 4
    assert summarize(engine, team="nobody") == []
    assert summarize(engine, team="nobody", group_by=["model"]) == []


def test_an_unknown_group_is_refused(engine: sa.Engine) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        summarize(engine, group_by=["team", "week"])
    assert caught.value.param == "group_by"
    assert "'week'" in caught.value.message
