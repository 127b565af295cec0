"""Rate limits of keys and teams (rpm, tpm, max_parallel), in memory and in a real Redis.

Windows follow the limiter's injected clock (a ``FakeClock``), so a window rolls over when the
test advances it; one test lets a real 1 s window roll over on the real clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from blaze_ai.config.tenancy import LimitsConfig
from blaze_ai.devtools.net import free_port
from blaze_ai.errors import RateLimitError
from blaze_ai.tenancy.limit_storage import RETRY_INTERVAL_S, MemoryCounterStorage, open_redis
from blaze_ai.tenancy.limits import EMPTY_TICKET, RateLimiter, Ticket
from blaze_ai.tenancy.types import Limits, Principal
from tests.fakes import FakeClock
from tests.redis_server import RedisServer

WINDOW_S = 60

MakeLimiter = Callable[..., Awaitable[RateLimiter]]

NONE = Limits()


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[MakeLimiter]:
    """Builds started limiters on this test's backend (memory, or the session's Redis)."""
    url = request.getfixturevalue("redis_server").url if request.param == "redis" else None
    started: list[RateLimiter] = []

    async def make(clock: FakeClock, **config: Any) -> RateLimiter:
        limiter = RateLimiter(
            LimitsConfig(redis_url=url, window_s=WINDOW_S, **config), clock=clock.now
        )
        await limiter.start()
        started.append(limiter)
        return limiter

    yield make
    for limiter in started:
        await limiter.stop()


def principal(
    key: Limits = NONE, team: Limits = NONE, *, key_id: str = "", team_name: str = ""
) -> Principal:
    """A principal with fresh (unique) key id and team name unless given."""
    return Principal(
        key_id=key_id or f"sk-blz-{uuid.uuid4().hex[:8]}",
        team=team_name or f"team-{uuid.uuid4().hex[:8]}",
        key_limits=key,
        team_limits=team,
    )


def storage_events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.message for r in caplog.records if r.name == "blaze_ai.resilience.outage"]


async def refused(limiter: RateLimiter, who: Principal, tokens: int = 1) -> RateLimitError:
    with pytest.raises(RateLimitError) as caught:
        await limiter.admit(who, tokens=tokens, request_id="refused")
    return caught.value


async def test_tpm_admits_ten_requests_then_refuses_until_the_window_rolls_over(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock(time.time())
    limiter = await make_limiter(clock)
    who = principal(Limits(tpm=1000))
    admitted = 0
    with pytest.raises(RateLimitError) as caught:
        for _ in range(20):
            ticket = await limiter.admit(who, tokens=100, request_id=f"r{admitted}")
            await ticket.settle(100)
            admitted += 1
    assert admitted == 10
    error = caught.value
    assert error.status_code == 429
    assert error.retry_after_s is not None and 0 < error.retry_after_s <= WINDOW_S
    assert f"rate limit of key {who.key_id}: 1000 tokens per {WINDOW_S} s" in error.message
    assert error.headers["x-ratelimit-limit-tokens"] == "1000"
    assert error.headers["x-ratelimit-remaining-tokens"] == "0"
    assert error.headers["x-ratelimit-reset-tokens"].endswith("s")
    assert "x-ratelimit-limit-requests" not in error.headers  # no rpm applies
    clock.advance(error.retry_after_s + 0.001)
    ticket = await limiter.admit(who, tokens=100, request_id="next-window")
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "900"
    assert limiter.unchecked_admissions == 0


async def test_rpm_and_tpm_windows_are_independent(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    few_requests = principal(Limits(rpm=3, tpm=1000))
    for i in range(3):
        ticket = await limiter.admit(few_requests, tokens=10, request_id=f"a{i}")
    assert ticket.headers["x-ratelimit-remaining-requests"] == "0"
    error = await refused(limiter, few_requests, tokens=10)
    assert f"rate limit of key {few_requests.key_id}: 3 requests per {WINDOW_S} s" in error.message
    assert error.headers["x-ratelimit-remaining-tokens"] == "970"  # the refused one's given back

    few_tokens = principal(Limits(rpm=100, tpm=100))
    ticket = await limiter.admit(few_tokens, tokens=100, request_id="b0")
    assert ticket.headers["x-ratelimit-remaining-requests"] == "99"
    error = await refused(limiter, few_tokens, tokens=1)
    assert "100 tokens per" in error.message
    assert error.headers["x-ratelimit-remaining-requests"] == "99"  # the refused one's given back


async def test_the_team_limit_is_shared_by_its_keys_and_both_limits_bite(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    team = f"team-{uuid.uuid4().hex[:8]}"
    first = principal(Limits(rpm=10), Limits(rpm=3), team_name=team)
    second = principal(Limits(rpm=10), Limits(rpm=3), team_name=team)
    await limiter.admit(first, tokens=1, request_id="1")
    await limiter.admit(first, tokens=1, request_id="2")
    ticket = await limiter.admit(second, tokens=1, request_id="3")
    assert ticket.headers["x-ratelimit-limit-requests"] == "3"  # the tightest: the team's
    assert ticket.headers["x-ratelimit-remaining-requests"] == "0"
    for who in (first, second):
        error = await refused(limiter, who)
        assert f"rate limit of team {team}: 3 requests per" in error.message

    tight_key = principal(Limits(rpm=1), Limits(rpm=10))
    ticket = await limiter.admit(tight_key, tokens=1, request_id="4")
    assert ticket.headers["x-ratelimit-limit-requests"] == "1"
    error = await refused(limiter, tight_key)
    assert f"rate limit of key {tight_key.key_id}: 1 requests per" in error.message


async def test_settle_refunds_once_and_charges_what_was_used(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    who = principal(Limits(tpm=1000))
    ticket = await limiter.admit(who, tokens=500, request_id="a")
    await ticket.settle(50)
    await ticket.settle(50)  # a no-op: refunding twice would leave room for 1000 more
    big = await limiter.admit(who, tokens=950, request_id="b")
    assert big.headers["x-ratelimit-remaining-tokens"] == "0"
    await refused(limiter, who, tokens=1)
    await big.settle(1250)  # used more than reserved: charged
    error = await refused(limiter, who, tokens=1)
    assert error.headers["x-ratelimit-remaining-tokens"] == "0"

    other = principal(Limits(tpm=1000))
    ticket = await limiter.admit(other, tokens=600, request_id="c")
    await ticket.settle(700)
    ticket = await limiter.admit(other, tokens=300, request_id="d")
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"


@pytest.mark.parametrize("team_limits", [Limits(rpm=1), Limits(max_parallel=1)])
async def test_a_refusal_by_the_team_gives_back_what_the_key_took(
    make_limiter: MakeLimiter, team_limits: Limits
) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    team = f"team-{uuid.uuid4().hex[:8]}"
    key_limits = Limits(rpm=2, tpm=1000)
    await limiter.admit(principal(team=team_limits, team_name=team), tokens=1, request_id="a")
    member = principal(key_limits, team_limits, team_name=team)
    error = await refused(limiter, member, tokens=400)  # the key's rpm and tpm were counted
    assert f"rate limit of team {team}" in error.message
    assert error.headers["x-ratelimit-remaining-tokens"] == "1000"
    alone = principal(key_limits, key_id=member.key_id)  # the same key's counters, no team
    await limiter.admit(alone, tokens=400, request_id="b")
    ticket = await limiter.admit(alone, tokens=400, request_id="c")
    assert ticket.headers["x-ratelimit-remaining-requests"] == "0"
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "200"


async def test_a_request_larger_than_the_tpm_can_never_pass(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    who = principal(Limits(tpm=1000), Limits(tpm=5000))
    error = await refused(limiter, who, tokens=1001)
    assert error.status_code == 429
    assert "can never pass" in error.message and who.key_id in error.message
    assert error.retry_after_s is None
    ticket = await limiter.admit(who, tokens=1000, request_id="fits")  # nothing was reserved
    assert ticket.headers["x-ratelimit-remaining-tokens"] == "0"


async def test_no_limits_cost_nothing(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    ticket = await limiter.admit(principal(), tokens=10**9, request_id="free")
    assert ticket is EMPTY_TICKET and ticket.headers == {}
    await ticket.settle(10**9)


async def test_max_parallel_holds_under_50_concurrent_admissions(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    who = principal(Limits(max_parallel=2), Limits(max_parallel=3))
    release = asyncio.Event()
    outstanding, peak, answered, refusals = 0, 0, 0, []

    async def one(i: int) -> None:
        nonlocal outstanding, peak, answered
        try:
            ticket = await limiter.admit(who, tokens=1, request_id=f"r{i}")
        except RateLimitError as exc:
            refusals.append(exc)
            answered += 1
            return
        outstanding += 1
        peak = max(peak, outstanding)
        answered += 1
        await release.wait()
        outstanding -= 1
        await ticket.settle(1)

    tasks = [asyncio.create_task(one(i)) for i in range(50)]
    while answered < 50:
        await asyncio.sleep(0.001)
    assert peak == 2 and outstanding == 2 and len(refusals) == 48
    assert refusals[0].retry_after_s == 1.0
    assert f"rate limit of key {who.key_id}: max_parallel 2" in refusals[0].message
    release.set()
    await asyncio.gather(*tasks)

    held = [await limiter.admit(who, tokens=1, request_id=f"again{i}") for i in range(2)]
    await refused(limiter, who)
    for ticket in held:
        await ticket.settle(1)
    await (await limiter.admit(who, tokens=1, request_id="after")).settle(1)


async def test_max_parallel_of_a_team_spans_its_keys(make_limiter: MakeLimiter) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    team = f"team-{uuid.uuid4().hex[:8]}"
    first = principal(Limits(max_parallel=5, rpm=100), Limits(max_parallel=2), team_name=team)
    second = principal(Limits(max_parallel=5, rpm=100), Limits(max_parallel=2), team_name=team)
    one = await limiter.admit(first, tokens=1, request_id="1")
    await limiter.admit(second, tokens=1, request_id="2")
    error = await refused(limiter, first)
    assert f"rate limit of team {team}: max_parallel 2" in error.message
    assert error.headers["x-ratelimit-remaining-requests"] == "99"  # its rpm was given back
    await one.settle(1)
    await one.settle(1)  # releasing twice frees one slot only
    await limiter.admit(first, tokens=1, request_id="3")
    await refused(limiter, second)


async def test_an_admission_cancelled_at_any_point_leaves_nothing_behind(
    make_limiter: MakeLimiter,
) -> None:
    limiter = await make_limiter(FakeClock(time.time()))
    who = principal(Limits(rpm=1000, tpm=100_000, max_parallel=1), Limits(max_parallel=1))
    admitted = 0
    for turns in range(40):  # cancel after 0, 1, 2... event-loop turns: before, inside, after
        task = asyncio.create_task(limiter.admit(who, tokens=10, request_id=f"r{turns}"))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        try:
            ticket = await task
        except asyncio.CancelledError:
            continue
        admitted += 1
        await ticket.settle(10)
    ticket = await limiter.admit(who, tokens=10, request_id="last")  # no slot leaked
    assert ticket.headers["x-ratelimit-remaining-requests"] == str(1000 - admitted - 1)
    assert ticket.headers["x-ratelimit-remaining-tokens"] == str(100_000 - 10 * admitted - 10)
    await ticket.settle(10)


async def test_a_real_window_rolls_over() -> None:
    limiter = RateLimiter(LimitsConfig(window_s=1))
    who = principal(Limits(rpm=2))
    await limiter.admit(who, tokens=1, request_id="a")
    await limiter.admit(who, tokens=1, request_id="b")
    error = await refused(limiter, who)
    assert error.retry_after_s is not None and 0 < error.retry_after_s <= 1
    await asyncio.sleep(error.retry_after_s + 0.01)
    ticket = await limiter.admit(who, tokens=1, request_id="c")
    assert ticket.headers["x-ratelimit-remaining-requests"] == "1"


async def test_a_refund_after_the_window_ended_does_not_refund_the_next(
    make_limiter: MakeLimiter,
) -> None:
    clock = FakeClock(time.time())
    limiter = await make_limiter(clock)
    who = principal(Limits(tpm=1000))
    long_request = await limiter.admit(who, tokens=900, request_id="long")
    clock.advance(WINDOW_S)
    ticket = await limiter.admit(who, tokens=900, request_id="next")
    await long_request.settle(0)  # its window is over: nothing to refund in this one
    await refused(limiter, who, tokens=101)
    await ticket.settle(900)


async def test_memory_storage_expires_and_sweeps_its_keys() -> None:
    clock = FakeClock(1000.0)
    storage = MemoryCounterStorage(clock.now)
    assert await storage.incr("a", 10, 5) == 5
    assert await storage.incr("a", 10, -7) == -2  # negative amounts add too (callers clamp)
    assert await storage.get_expiry("a") == 1010.0
    clock.advance(10)
    assert await storage.get("a") == 0
    assert await storage.incr("b", 10) == 1
    assert len(storage) == 1  # "a" swept


async def test_limits_redis_storage_takes_negative_amounts(redis_server: RedisServer) -> None:
    storage, client = open_redis(redis_server.url)
    key = f"test/{uuid.uuid4().hex}"
    try:
        assert await storage.incr(key, 60, 500) == 500
        assert await storage.incr(key, 60, -450) == 50
        assert 0 < await client.ttl(f"blaze:limits:{key}") <= 60  # type: ignore[operator]
    finally:
        await client.aclose()


async def test_two_processes_share_rpm_and_max_parallel(redis_server: RedisServer) -> None:
    clock = FakeClock(time.time())
    config = LimitsConfig(redis_url=redis_server.url, window_s=WINDOW_S)
    one, two = RateLimiter(config, clock=clock.now), RateLimiter(config, clock=clock.now)
    await one.start()
    await two.start()
    try:
        who = principal(Limits(rpm=4, max_parallel=2))
        first = await one.admit(who, tokens=1, request_id="a")
        second = await two.admit(who, tokens=1, request_id="a")  # the same id: two leases
        await refused(one, who)
        await refused(two, who)
        await first.settle(1)
        third = await two.admit(who, tokens=1, request_id="b")
        assert third.headers["x-ratelimit-remaining-requests"] == "1"
        await second.settle(1)
        await third.settle(1)
        await one.admit(who, tokens=1, request_id="c")
        error = await refused(two, who)
        assert "4 requests per" in error.message
    finally:
        await one.stop()
        await two.stop()


async def test_a_lease_never_released_expires(redis_server: RedisServer) -> None:
    clock = FakeClock(time.time())
    config = LimitsConfig(redis_url=redis_server.url, parallel_lease_s=30)
    dead, alive = RateLimiter(config, clock=clock.now), RateLimiter(config, clock=clock.now)
    await dead.start()
    await alive.start()
    try:
        who = principal(Limits(max_parallel=1))
        await dead.admit(who, tokens=1, request_id="dies-holding-it")
        await dead.stop()  # the process dies before settling
        await refused(alive, who)
        clock.advance(30.1)
        ticket = await alive.admit(who, tokens=1, request_id="after-the-lease")
        await ticket.settle(1)
    finally:
        await alive.stop()


async def test_redis_down_admits_unchecked_and_logs_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(time.time())
    limiter = RateLimiter(LimitsConfig(redis_url=redis_server.url), clock=clock.now)
    await limiter.start()
    caplog.set_level(logging.INFO, logger="blaze_ai.resilience.outage")
    who = principal(Limits(rpm=100, tpm=10_000, max_parallel=5))
    try:
        held = await limiter.admit(who, tokens=10, request_id="before")
        assert held.headers
        redis_server.kill()
        started = time.monotonic()
        tickets = [await limiter.admit(who, tokens=10, request_id=f"down{i}") for i in range(5)]
        assert time.monotonic() - started < 2.0
        assert all(t is EMPTY_TICKET for t in tickets)
        await held.settle(10)  # skipped while Redis is down; its lease will expire
        assert limiter.unchecked_admissions == 5 and not limiter.storage_up
        assert storage_events(caplog) == ["rate_limit_storage_unavailable"]
    finally:
        redis_server.start()
    clock.advance(RETRY_INTERVAL_S)
    ticket = await limiter.admit(who, tokens=10, request_id="after")
    assert isinstance(ticket, Ticket) and ticket.headers["x-ratelimit-remaining-requests"] == "99"
    await ticket.settle(10)
    assert limiter.storage_up and limiter.unchecked_admissions == 5
    assert storage_events(caplog) == [
        "rate_limit_storage_unavailable",
        "rate_limit_storage_recovered",
    ]
    await limiter.stop()


async def test_a_redis_down_at_start_admits_unchecked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="blaze_ai.resilience.outage")
    config = LimitsConfig(redis_url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens
    limiter = RateLimiter(config, clock=FakeClock(time.time()).now)
    await limiter.start()
    try:
        ticket = await limiter.admit(principal(Limits(rpm=1)), tokens=1, request_id="a")
        assert ticket is EMPTY_TICKET and limiter.unchecked_admissions == 1
        assert storage_events(caplog) == ["rate_limit_storage_unavailable"]
    finally:
        await limiter.stop()
