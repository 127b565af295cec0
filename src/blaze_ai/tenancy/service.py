"""Tenancy, assembled from the settings: the key database, authentication, limits and usage.

:func:`build_tenancy` is the composition root of this package (the app calls it once);
:class:`Tenancy` is what the HTTP layer talks to: ``authenticate`` at a request's start,
``finish`` once its response has ended (settle its limits, write its usage record).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence

from blaze_ai.config.schema import Settings
from blaze_ai.errors import ConfigError
from blaze_ai.tenancy.auth import Authenticator
from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.keys import KeyStore
from blaze_ai.tenancy.limits import RateLimiter
from blaze_ai.tenancy.meter import Meter
from blaze_ai.tenancy.types import Principal, UsageRecord
from blaze_ai.tenancy.usage import UsageWriter

logger = logging.getLogger(__name__)

ADMIN_KEY_ENV = "BLAZE_ADMIN_KEY"
MIN_ADMIN_KEY_CHARS = 16


def admin_key(settings: Settings) -> str | None:
    """The admin key: ``BLAZE_ADMIN_KEY``, else the first line of ``auth.admin_key_file``.

    Raises:
        ConfigError: the file cannot be read, or the key is shorter than 16 characters.
    """
    key = os.environ.get(ADMIN_KEY_ENV) or None
    path = settings.auth.admin_key_file
    if key is None and path is not None:
        try:
            key = path.expanduser().read_text().splitlines()[0].strip() or None
        except (OSError, IndexError) as exc:
            raise ConfigError(f"auth.admin_key_file: cannot read {path}: {exc}") from None
    if key is not None and len(key) < MIN_ADMIN_KEY_CHARS:
        raise ConfigError(f"the admin key must have at least {MIN_ADMIN_KEY_CHARS} characters")
    return key


def auth_enabled(settings: Settings) -> bool:
    """``auth.enabled``, or (when unset) whether an admin key is configured."""
    if settings.auth.enabled is not None:
        return settings.auth.enabled
    return admin_key(settings) is not None


def check_exposure(settings: Settings) -> None:
    """Refuse to serve without auth on an interface other clients can reach.

    Raises:
        ConfigError: auth is off, ``server.host`` is not a loopback address, and
            ``auth.allow_unauthenticated`` is not set.
    """
    if auth_enabled(settings) or is_loopback(settings.server.host):
        return
    if not settings.auth.allow_unauthenticated:
        raise ConfigError(
            f"auth is off and server.host {settings.server.host!r} is not a loopback address: "
            "set BLAZE_ADMIN_KEY (auth on), or auth.allow_unauthenticated: true"
        )
    logger.warning("auth_disabled_on_network", extra={"host": settings.server.host, "auth": "off"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, or ``localhost``) is a loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Tenancy:
    """Keys, limits and usage of one Blaze process (its state shared through the database
    and, for limits, Redis).

    Args:
        database: the key and usage database (migrated at :meth:`start`).
        store: the keys and teams in it.
        authenticator: headers -> principal.
        limiter: rpm / tpm / max_parallel.
        usage: the usage writer, or None when ``usage.enabled`` is false.
        now: Unix seconds, for usage records.
    """

    def __init__(
        self,
        database: Database,
        store: KeyStore,
        authenticator: Authenticator,
        limiter: RateLimiter,
        usage: UsageWriter | None,
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.store = store
        self.authenticator = authenticator
        self.limiter = limiter
        self.usage = usage
        self._now = now
        self._settling: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        """Migrate the database (a failure is logged: known keys cannot exist yet, so every
        key then gets 503 until it answers), connect the limits, start the usage writer."""
        try:
            await asyncio.to_thread(self.database.migrate)
        except Exception as exc:
            logger.error("key_database_unavailable", extra={"error": type(exc).__name__})
        await self.limiter.start()
        if self.usage is not None:
            await self.usage.start()

    async def wait_settled(self, timeout_s: float = 5.0) -> None:
        """Wait (at most ``timeout_s`` seconds) for the limits of ended requests to settle."""
        if self._settling:
            await asyncio.wait(set(self._settling), timeout=timeout_s)

    async def stop(self) -> None:
        """Settle what is settling, flush the usage records (bounded), disconnect, close the
        database."""
        await self.wait_settled()
        if self.usage is not None:
            await self.usage.stop()
        await self.limiter.stop()
        await asyncio.to_thread(self.database.dispose)

    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        """See :meth:`Authenticator.authenticate` (401 / 503)."""
        return await self.authenticator.authenticate(headers)

    def finish(
        self,
        meter: Meter,
        *,
        request_id: str,
        status: int,
        latency_s: float,
        error_type: str | None,
        record: bool = True,
    ) -> None:
        """The request has ended: record its usage (``record``), and settle its limits with
        the tokens it used in a task of its own, so nothing here waits or can be cancelled
        (it runs in the response's last ``send``, which a hang-up may cancel right after).

        Never raises (the response is already sent).
        """
        meter.abandon_admission()
        if meter.ticket is not None:
            task = asyncio.ensure_future(self._settle(meter))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
        if self.usage is None or not record:
            return
        principal = meter.principal
        self.usage.record(
            UsageRecord(
                created_at=self._now(),
                request_id=request_id,
                key_id=principal.key_id,
                team=principal.team,
                model=meter.model or "",
                status=status,
                latency_ms=round(latency_s * 1000, 2),
                deployment=meter.deployment,
                prompt_tokens=meter.prompt_tokens,
                completion_tokens=meter.completion_tokens,
                cached_tokens=meter.cached_tokens,
                images=meter.images,
                error_type=error_type,
            )
        )

    async def _settle(self, meter: Meter) -> None:
        assert meter.ticket is not None
        try:
            await meter.ticket.settle(meter.charged_tokens)
        except Exception as exc:  # the limits' storage is down: their window forgets it
            logger.warning("rate_limit_settle_failed", extra={"error": type(exc).__name__})


def build_tenancy(settings: Settings) -> Tenancy | None:
    """The tenancy of ``settings``; None when auth is off (no keys, limits or usage).

    Raises:
        ConfigError: an unusable admin key, or an invalid database URL.
    """
    if not auth_enabled(settings):
        return None
    try:
        database = Database(settings.auth.database_url)
    except Exception as exc:
        raise ConfigError(f"auth.database_url: {exc}") from None
    store = KeyStore(database)
    authenticator = Authenticator(
        store, admin_key=admin_key(settings), cache_ttl_s=settings.auth.cache_ttl_s
    )
    usage = None
    if settings.usage.enabled:
        usage = UsageWriter(database.engine, settings.usage, on_batch=_touch_keys(store))
    return Tenancy(database, store, authenticator, RateLimiter(settings.limits), usage)


def _touch_keys(store: KeyStore) -> Callable[[Sequence[UsageRecord]], None]:
    """What the usage writer calls after each batch: the keys' ``last_used_at``."""

    def touch(records: Sequence[UsageRecord]) -> None:
        last: dict[str, float] = {}
        for record in records:
            last[record.key_id] = max(last.get(record.key_id, 0.0), record.created_at)
        store.touch(last)

    return touch
