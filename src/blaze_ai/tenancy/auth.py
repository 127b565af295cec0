"""Authentication: the request's API key -> a :class:`Principal`, or a 401 saying why not.

The key comes as ``Authorization: Bearer <key>`` (OpenAI clients) or ``api-key: <key>``
(Azure OpenAI clients). The admin key (``BLAZE_ADMIN_KEY``) is compared in constant time and
gives the admin principal; any other key is looked up in the key store by its public id and
compared by SHA-256 in constant time (:meth:`KeyStore.find`).

Each process keeps what it looked up for ``auth.cache_ttl_s`` seconds (positive and negative
answers, a bounded number of each), so an update, revoke or block made through any process
reaches every process within that time, however busy the key is. Concurrent requests with the
same uncached key share one lookup. When the database cannot be read, a key already known
keeps its last answer (a stopped database does not stop the traffic of known keys); an
unknown key then gets 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from blaze_ai.errors import AuthenticationError, AuthUnavailableError
from blaze_ai.tenancy.keys import KeyMatch, KeyStore, key_id_of
from blaze_ai.tenancy.types import ADMIN_KEY_ID, Principal

logger = logging.getLogger(__name__)

MAX_CACHED_KEYS = 10_000
"""Most lookups of known keys, and apart from them of unknown keys, a process keeps; the
oldest go first. A flood of made-up keys only pushes out other made-up keys."""

MAX_KEY_CHARS = 512
"""A longer ``Authorization`` value is refused before any lookup."""

_HOW = "send it as 'Authorization: Bearer sk-blz-...'"


@dataclass(frozen=True, slots=True)
class _Lookup:
    """A lookup's answer: the match and, for a live key, its principal (built once)."""

    match: KeyMatch | None
    fetched_at: float
    principal: Principal | None = None


class Authenticator:
    """Turns request headers into a :class:`Principal`.

    Args:
        store: the key store (None: only the admin key is accepted).
        admin_key: the admin key, or None for none.
        cache_ttl_s: seconds a lookup is reused (``auth.cache_ttl_s``).
        clock: monotonic seconds, for the cache.
        now: Unix seconds, for ``expires_at``.
    """

    def __init__(
        self,
        store: KeyStore | None,
        *,
        admin_key: str | None,
        cache_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._admin_key = admin_key.encode() if admin_key else None
        self._ttl_s = cache_ttl_s
        self._clock = clock
        self._now = now
        self._known: OrderedDict[str, _Lookup] = OrderedDict()
        self._unknown: OrderedDict[str, _Lookup] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[_Lookup]] = {}
        self._admin = Principal(key_id=ADMIN_KEY_ID, team="", is_admin=True)
        self.db_unavailable = False

    async def authenticate(self, headers: Iterable[tuple[bytes, bytes]]) -> Principal:
        """The principal of the key in ``headers`` (ASGI header pairs, names in lower case).

        Raises:
            AuthenticationError: no key, a malformed header, an unknown key, or a key that is
                revoked, expired or disabled, or whose team is disabled (401, each its own
                message; a key is named only by its public id).
            AuthUnavailableError: an unknown key while the key database cannot be read (503).
        """
        secret = _secret_from(headers)
        if self._admin_key is not None and hmac.compare_digest(secret.encode(), self._admin_key):
            return self._admin
        key_id = key_id_of(secret)
        if key_id is None or self._store is None:
            raise AuthenticationError("Incorrect API key provided")
        lookup = await self._lookup(secret)
        match = lookup.match
        if match is None:
            raise AuthenticationError(f"Incorrect API key provided: {key_id}****")
        expires_at = match.key.expires_at
        if lookup.principal is not None and (expires_at is None or self._now() < expires_at):
            return lookup.principal
        return _principal(match, self._now())

    async def _lookup(self, secret: str) -> _Lookup:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        cached = self._known.get(digest) or self._unknown.get(digest)
        if cached is not None and self._clock() - cached.fetched_at < self._ttl_s:
            return cached
        task = self._inflight.get(digest)
        if task is None:  # one lookup per key at a time; a hang-up does not cancel it
            task = asyncio.ensure_future(self._fetch(secret, cached))
            self._inflight[digest] = task
            task.add_done_callback(lambda _: self._settled(digest, task))
        return await asyncio.shield(task)

    def _settled(self, digest: str, task: asyncio.Future[_Lookup]) -> None:
        self._inflight.pop(digest, None)
        if task.cancelled() or task.exception() is not None:
            return
        lookup = task.result()
        cache, other = (self._known, self._unknown)
        if lookup.match is None:
            cache, other = other, cache
        other.pop(digest, None)
        cache[digest] = lookup
        cache.move_to_end(digest)
        while len(cache) > MAX_CACHED_KEYS:
            cache.popitem(last=False)

    async def _fetch(self, secret: str, cached: _Lookup | None) -> _Lookup:
        assert self._store is not None
        try:
            match = await asyncio.to_thread(self._store.find, secret)
        except Exception as exc:  # the database is down: known keys keep their last answer
            if not self.db_unavailable:
                self.db_unavailable = True
                logger.warning("key_store_unavailable", extra={"error": type(exc).__name__})
            if cached is not None:
                return _Lookup(cached.match, self._clock(), cached.principal)
            raise AuthUnavailableError("the key database cannot be read; retry") from None
        if self.db_unavailable:
            self.db_unavailable = False
            logger.info("key_store_recovered")
        return _Lookup(match, self._clock(), _live_principal(match, self._now()))


def _principal(match: KeyMatch, now: float) -> Principal:
    """The principal of ``match`` at Unix time ``now``.

    Raises:
        AuthenticationError: the key is revoked, expired or disabled, or its team disabled.
    """
    key, team = match.key, match.team
    if key.revoked_at is not None:
        raise AuthenticationError(f"API key {key.key_id} has been revoked")
    if key.expires_at is not None and now >= key.expires_at:
        raise AuthenticationError(f"API key {key.key_id} has expired")
    if key.disabled:
        raise AuthenticationError(f"API key {key.key_id} is disabled")
    if team.disabled:
        raise AuthenticationError(f"the team of API key {key.key_id} is disabled")
    return Principal(
        key_id=key.key_id,
        team=team.name,
        models=key.models,
        key_limits=key.limits,
        team_limits=team.limits,
    )


def _live_principal(match: KeyMatch | None, now: float) -> Principal | None:
    """The principal of a key that may be used now, else None (refused when asked)."""
    if match is None:
        return None
    try:
        return _principal(match, now)
    except AuthenticationError:
        return None


def _secret_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The key of ``Authorization: Bearer <key>`` or ``api-key: <key>``.

    Raises:
        AuthenticationError: neither header, or a value that is not one printable token.
    """
    value: bytes | None = None
    bearer = False
    for name, raw in headers:
        if name == b"authorization":
            value, bearer = raw, True
            break
        if name == b"api-key" and value is None:
            value = raw
    if value is None:
        raise AuthenticationError(f"Missing API key: {_HOW}")
    if len(value) > MAX_KEY_CHARS:
        raise AuthenticationError("Malformed API key: too long")
    text = value.decode("latin-1").strip(" \t")
    if bearer and text:
        scheme, _, text = text.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationError(f"Malformed Authorization header: {_HOW}")
        text = text.strip(" \t")
    if not text:
        raise AuthenticationError(f"Missing API key: {_HOW}")
    if not text.isascii() or not text.isprintable() or " " in text or "\t" in text:
        raise AuthenticationError("Malformed API key: one token of printable characters")
    return text
