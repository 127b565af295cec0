"""Per-key and per-team rate limits: requests and tokens per window, requests in progress.

A request is admitted when it fits under its key's limits and its team's (``Limits``: ``rpm``,
``tpm``, ``max_parallel``; None is unlimited). :meth:`RateLimiter.admit` reserves, on the key
and on the team, 1 request, the request's ``tokens`` (prompt + the most it may generate) and
one ``max_parallel`` slot, all or nothing; :meth:`Ticket.settle` reconciles the tokens with
those used (a refund or an extra charge) and frees the slots. So a ``tpm`` limit is overshot by
at most one request, and does not bite early once earlier requests are settled.

Windows are fixed, ``limits.window_s`` long, counted with ``limits`` (a ``RateLimitItem`` per
limit; ``limits``' Redis storage, or :class:`~blaze_ai.tenancy.limit_storage.MemoryCounterStorage`
in one process). They are aligned on the clock, each subject's shifted by a phase derived from
its name (so not every key's window resets at once), and a window's index is part of its
counter's key: a settle after the window ended never refunds the next window, and the reset
time of a window is known without asking the storage. Requests and tokens use separate keys.

When Redis fails (refused, reset, timed out: each call is bounded by 0.5 s), requests are
admitted unchecked (``unchecked_admissions`` counts them) and Redis is skipped between probes
(see :func:`~blaze_ai.tenancy.limit_storage.storage_health`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NoReturn

from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import Storage
from redis.asyncio import Redis

from blaze_ai.config.tenancy import LimitsConfig
from blaze_ai.errors import RateLimitError
from blaze_ai.tenancy.limit_headers import WindowState, rate_limit_headers
from blaze_ai.tenancy.limit_slots import MemorySlots, RedisSlots, SlotStore
from blaze_ai.tenancy.limit_storage import (
    REDIS_KEY_PREFIX,
    RETRY_INTERVAL_S,
    STORAGE_ERRORS,
    MemoryCounterStorage,
    open_redis,
    storage_health,
)
from blaze_ai.tenancy.types import Limits, Principal

logger = logging.getLogger(__name__)

PARALLEL_RETRY_AFTER_S = 1.0
"""``Retry-After`` of a request refused for ``max_parallel``, in seconds."""

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class _Subject:
    """A key or a team whose limits apply to a request.

    Attributes:
        kind: ``key`` or ``team``.
        name: the key's public id or the team's name.
        id: ``<kind>:<name>``, the subject in storage keys.
        phase_s: its windows start this many seconds after multiples of the window.
    """

    kind: str
    name: str
    id: str
    limits: Limits
    phase_s: float


@dataclass(frozen=True, slots=True)
class _TokenHold:
    """Tokens a ticket reserved on one subject's ``tpm`` window (``index``, under ``key``)."""

    subject: _Subject
    item: RateLimitItem
    index: int
    key: str


class _Reservation:
    """One admission: what it asks for and what it took so far (handed to its ticket, or given
    back on a refusal)."""

    __slots__ = (
        "counters",
        "holds",
        "lease",
        "now",
        "requests",
        "slots",
        "subjects",
        "tokens",
        "want_tokens",
    )

    def __init__(self, subjects: Sequence[_Subject], want_tokens: int, now: float) -> None:
        self.subjects = subjects
        self.want_tokens = want_tokens
        self.now = now
        self.counters: list[tuple[str, int]] = []  # (storage key, amount added)
        self.holds: list[_TokenHold] = []
        self.requests: list[WindowState] = []
        self.tokens: list[WindowState] = []
        self.slots: tuple[str, ...] = ()  # ids of the subjects whose max_parallel applies
        self.lease = ""  # the lease of their slots, once asked for


class Ticket:
    """An admitted request's hold on its limits, until :meth:`settle`.

    Attributes:
        headers: OpenAI's ``x-ratelimit-*`` headers for the response (the tightest of key and
            team; empty when no ``rpm`` nor ``tpm`` applies, or when admitted unchecked).
    """

    __slots__ = ("_holds", "_lease", "_limiter", "_reserved", "_settled", "_slots", "headers")

    def __init__(
        self,
        headers: Mapping[str, str],
        limiter: RateLimiter | None = None,
        reserved: int = 0,
        holds: Sequence[_TokenHold] = (),
        slots: Sequence[str] = (),
        lease: str = "",
    ) -> None:
        self.headers = headers
        self._limiter = limiter
        self._reserved = reserved
        self._holds = holds
        self._slots = slots
        self._lease = lease
        self._settled = limiter is None

    async def settle(self, used_tokens: int) -> None:
        """Reconcile the reserved tokens with ``used_tokens`` (prompt + completion) and free
        the ``max_parallel`` slots. Idempotent: only the first call counts. Never raises for a
        failing Redis (its leases then expire after ``limits.parallel_lease_s``)."""
        if self._settled or self._limiter is None:
            return
        self._settled = True
        delta = used_tokens - self._reserved
        await self._limiter._settle(delta, self._holds, self._slots, self._lease)


EMPTY_TICKET = Ticket(NO_HEADERS)
"""The ticket of a request no limit applies to (or admitted unchecked): settling it is free."""


class RateLimiter:
    """Admits requests under their key's and team's limits, in memory or in Redis.

    Args:
        config: ``limits`` settings (``redis_url``, ``window_s``, ``parallel_lease_s``).
        clock: wall-clock time source in Unix seconds (windows, leases, Redis retry pacing);
            the same in every process that shares a Redis.

    Attributes:
        unchecked_admissions: requests admitted without counting because Redis failed.
    """

    def __init__(self, config: LimitsConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.unchecked_admissions = 0
        self._clock = clock
        self._window_s = config.window_s
        self._window_ms = config.window_s * 1000
        self._items: dict[int, RateLimitItem] = {}
        self._storage: Storage = MemoryCounterStorage(clock)
        self._slots: SlotStore = MemorySlots()
        self._client: Redis | None = None
        self._health = storage_health(clock, RETRY_INTERVAL_S)
        self._lease_tag = secrets.token_hex(4)  # leases of two processes never collide
        self._lease_serial = itertools.count()  # nor those of two requests with one id

    @property
    def storage_up(self) -> bool:
        """False while the counters' Redis fails."""
        return self._health.up

    async def start(self) -> None:
        """Connect to ``config.redis_url`` when set (counters in this process otherwise). A
        Redis that does not answer is logged, not raised: requests are then admitted unchecked
        until it answers."""
        url = self.config.redis_url
        if url is not None and self._client is None:
            self._storage, self._client = open_redis(url)
            self._slots = RedisSlots(
                self._client,
                key_prefix=REDIS_KEY_PREFIX,
                lease_s=self.config.parallel_lease_s,
                clock=self._clock,
            )
            try:
                await self._client.ping()
            except STORAGE_ERRORS as exc:
                self._health.failure(exc)
        storage = "memory" if url is None else "redis"
        logger.info("rate_limiter_started", extra={"storage": storage, "window_s": self._window_s})

    async def stop(self) -> None:
        """Close the Redis connections (nothing to do in memory)."""
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except STORAGE_ERRORS as exc:
                logger.debug("rate_limiter_close_failed", extra={"error": type(exc).__name__})

    async def admit(self, principal: Principal, *, tokens: int, request_id: str) -> Ticket:
        """Reserve 1 request, ``tokens`` tokens and one ``max_parallel`` slot on the key and on
        the team of ``principal``, all or nothing.

        Args:
            principal: who asks; its ``key_limits`` and ``team_limits`` both apply.
            tokens: tokens to reserve (>= 0): prompt tokens + the request's ``max_tokens`` (or
                ``limits.default_max_tokens``), reconciled by :meth:`Ticket.settle`.
            request_id: the request's id (names its ``max_parallel`` lease in Redis).

        Returns:
            The ticket to settle when the request ends (the shared :data:`EMPTY_TICKET` when no
            limit applies, or when Redis fails and the request is admitted unchecked).

        Raises:
            RateLimitError: a limit refused (429, ``Retry-After`` and ``x-ratelimit-*``
                headers); nothing stays reserved. Also when ``tokens`` alone exceed a ``tpm``.
        """
        subjects = self._subjects(principal)
        if not subjects:
            return EMPTY_TICKET
        self._refuse_too_large(subjects, tokens)
        if not self._health.allow():
            return self._unchecked()
        res = _Reservation(subjects, tokens, self._clock())
        try:
            ticket = await self._reserve(res, request_id)
        except STORAGE_ERRORS as exc:
            self._health.failure(exc)
            return self._unchecked()
        except RateLimitError:
            self._health.success()  # the storage answered: a refusal, not an outage
            raise
        except asyncio.CancelledError:  # the caller went away mid-way: it will never settle
            await self._give_back(res)
            raise
        self._health.success()
        return ticket

    async def _reserve(self, res: _Reservation, request_id: str) -> Ticket:
        """Count the request on every limit in turn (the requests, then the tokens, then the
        ``max_parallel`` slots); refuse, giving all back, at the first that is exceeded."""
        subjects, tokens = res.subjects, res.want_tokens
        per = f"per {self._window_s} s"
        for subject in subjects:
            rpm = subject.limits.rpm
            if rpm is not None:
                state, _ = await self._count(res, subject, "rpm", rpm, 1)
                res.requests.append(state)
                if state.count > rpm:
                    await self._refuse(
                        res, subject, f"{rpm} requests {per}", state.reset_s, limit="rpm"
                    )
        for subject in subjects:
            tpm = subject.limits.tpm
            if tpm is not None:
                state, hold = await self._count(res, subject, "tpm", tpm, tokens)
                res.tokens.append(state)
                res.holds.append(hold)
                if state.count > tpm:
                    what = f"{tpm} tokens {per} (this request reserves {tokens})"
                    await self._refuse(res, subject, what, state.reset_s, limit="tpm")
        parallel = [s for s in subjects if s.limits.max_parallel is not None]
        if parallel:
            res.slots = tuple(s.id for s in parallel)
            res.lease = f"{request_id}:{self._lease_tag}:{next(self._lease_serial)}"
            wanted = [(s.id, s.limits.max_parallel or 0) for s in parallel]
            full = await self._slots.take(wanted, res.lease)
            if full is not None:
                res.lease = ""  # nothing was taken
                subject = parallel[full]
                what = f"max_parallel {subject.limits.max_parallel} requests in progress"
                await self._refuse(res, subject, what, PARALLEL_RETRY_AFTER_S, limit="max_parallel")
        headers = rate_limit_headers(res.requests, res.tokens)
        return Ticket(headers, self, tokens, res.holds, res.slots, res.lease)

    async def _count(
        self, res: _Reservation, subject: _Subject, kind: str, limit: int, amount: int
    ) -> tuple[WindowState, _TokenHold]:
        """Add ``amount`` to ``subject``'s ``kind`` window of ``limit``: the window's state
        after it, and where it was added."""
        item = self._item(limit)
        index, reset_s = self._window(subject, res.now)
        key = item.key_for(kind, subject.kind, subject.name, index)
        res.counters.append((key, amount))  # first: if cancelled while Redis counts, undo it
        count = await self._storage.incr(key, self._window_s, amount)
        return WindowState(limit, count, reset_s), _TokenHold(subject, item, index, key)

    async def _refuse(
        self,
        res: _Reservation,
        subject: _Subject,
        what: str,
        retry_after_s: float,
        *,
        limit: str,
    ) -> NoReturn:
        """Give back what ``res`` took and raise the refusal, naming the limit and whose."""
        await self._give_back(res)
        raise RateLimitError(
            f"rate limit of {subject.kind} {subject.name}: {what}",
            retry_after_s=retry_after_s,
            headers=await self._refusal_headers(res),
            limit=limit,
        )

    async def _refusal_headers(self, res: _Reservation) -> dict[str, str]:
        """The headers of a refused request: the windows as they are once it gave all back
        (those it had not counted yet are read; none when that read fails)."""
        requests = [WindowState(s.limit, s.count - 1, s.reset_s) for s in res.requests]
        tokens = [WindowState(s.limit, s.count - res.want_tokens, s.reset_s) for s in res.tokens]
        rpm_subjects = [s for s in res.subjects if s.limits.rpm is not None]
        tpm_subjects = [s for s in res.subjects if s.limits.tpm is not None]
        try:
            for subject in rpm_subjects[len(requests) :]:
                requests.append(await self._peek(subject, "rpm", subject.limits.rpm, res.now))
            for subject in tpm_subjects[len(tokens) :]:
                tokens.append(await self._peek(subject, "tpm", subject.limits.tpm, res.now))
        except STORAGE_ERRORS as exc:
            self._health.failure(exc)
            return {}
        return rate_limit_headers(requests, tokens)

    async def _peek(
        self, subject: _Subject, kind: str, limit: int | None, now: float
    ) -> WindowState:
        """``subject``'s ``kind`` window of ``limit`` at ``now``, read without counting."""
        limit = limit or 0
        index, reset_s = self._window(subject, now)
        key = self._item(limit).key_for(kind, subject.kind, subject.name, index)
        return WindowState(limit, await self._storage.get(key), reset_s)

    def _refuse_too_large(self, subjects: Sequence[_Subject], tokens: int) -> None:
        """Refuse a request whose ``tokens`` alone exceed a ``tpm``: it could never pass."""
        for subject in subjects:
            tpm = subject.limits.tpm
            if tpm is not None and tokens > tpm:
                raise RateLimitError(
                    f"request too large for the rate limit of {subject.kind} {subject.name}: "
                    f"it reserves {tokens} tokens (prompt + max_tokens), over the limit of "
                    f"{tpm} tokens per {self._window_s} s, so it can never pass; lower "
                    "max_tokens or shorten the prompt",
                    limit="tpm",
                )

    async def _settle(
        self, delta: int, holds: Sequence[_TokenHold], slots: Sequence[str], lease: str
    ) -> None:
        """Add ``delta`` tokens to each held ``tpm`` window (a refund only while the window
        lasts; an extra charge goes to the current window) and release the ``max_parallel``
        slots of ``slots`` leased as ``lease``."""
        if (not delta or not holds) and not slots:
            return
        if not self._health.allow():
            return
        try:
            if slots:  # first: a slot held too long blocks a request, a token only counts
                await self._slots.release(slots, lease)
            if delta:
                now = self._clock()
                for hold in holds:
                    index, _ = self._window(hold.subject, now)
                    if index == hold.index:
                        await self._add(hold.key, delta)
                    elif delta > 0:
                        subject = hold.subject
                        key = hold.item.key_for("tpm", subject.kind, subject.name, index)
                        await self._add(key, delta)
        except STORAGE_ERRORS as exc:
            self._health.failure(exc)
            return
        self._health.success()

    async def _give_back(self, res: _Reservation) -> None:
        """Undo what ``res`` added to counters and release its slots (a lease Redis may or may
        not have taken when the caller went away is released too). A failing Redis is recorded;
        what it holds then expires with its window or lease."""
        try:
            if res.lease:
                await self._slots.release(res.slots, res.lease)
            for key, amount in res.counters:
                await self._add(key, -amount)
        except STORAGE_ERRORS as exc:
            self._health.failure(exc)

    async def _add(self, key: str, amount: int) -> None:
        """Add ``amount`` (maybe negative) to the counter ``key``, never leaving it below 0."""
        count = await self._storage.incr(key, self._window_s, amount)
        if count < 0:
            await self._storage.incr(key, self._window_s, -count)

    def _subjects(self, principal: Principal) -> tuple[_Subject, ...]:
        """The key and the team of ``principal``, those with a limit."""
        key, team = principal.key_limits, principal.team_limits
        if _unlimited(key):
            return () if _unlimited(team) else (self._subject("team", principal.team, team),)
        if _unlimited(team):
            return (self._subject("key", principal.key_id, key),)
        return (
            self._subject("key", principal.key_id, key),
            self._subject("team", principal.team, team),
        )

    def _subject(self, kind: str, name: str, limits: Limits) -> _Subject:
        subject_id = f"{kind}:{name}"
        phase_ms = zlib.crc32(subject_id.encode()) % self._window_ms
        return _Subject(kind, name, subject_id, limits, phase_ms / 1000)

    def _window(self, subject: _Subject, now: float) -> tuple[int, float]:
        """The index of ``subject``'s window at ``now`` and the seconds until it ends."""
        since = now - subject.phase_s
        index = int(since // self._window_s)
        return index, (index + 1) * self._window_s - since

    def _item(self, amount: int) -> RateLimitItem:
        """The (cached) ``limits`` item of ``amount`` per window."""
        item = self._items.get(amount)
        if item is None:
            item = RateLimitItemPerSecond(amount, multiples=self._window_s, namespace="blaze")
            self._items[amount] = item
        return item

    def _unchecked(self) -> Ticket:
        self.unchecked_admissions += 1
        return EMPTY_TICKET


def _unlimited(limits: Limits) -> bool:
    return limits.rpm is None and limits.tpm is None and limits.max_parallel is None
