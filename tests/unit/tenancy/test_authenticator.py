"""The authenticator: header parsing, the per-process key cache (TTL, one lookup per key at a
time), and known keys kept while the database cannot be read (a real PostgreSQL, stopped)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from blaze_ai.errors import AuthenticationError, AuthUnavailableError
from blaze_ai.tenancy.auth import Authenticator
from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.keys import KeyStore
from blaze_ai.tenancy.types import Limits
from tests.postgres_server import PostgresServer

ADMIN = "an-admin-key-of-enough-length"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _headers(secret: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", f"Bearer {secret}".encode())]


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    database = Database(f"sqlite:///{tmp_path / 'keys.db'}")
    database.migrate()
    return KeyStore(database)


async def test_the_admin_key_and_a_team_key(store: KeyStore) -> None:
    key, secret = store.create_key(name="k", team="t", limits=Limits(rpm=5), models=("tiny",))
    auth = Authenticator(store, admin_key=ADMIN, cache_ttl_s=5)
    assert (await auth.authenticate(_headers(ADMIN))).is_admin
    principal = await auth.authenticate(_headers(secret))
    assert (principal.key_id, principal.team, principal.is_admin) == (key.key_id, "t", False)
    assert principal.key_limits == Limits(rpm=5) and principal.models == ("tiny",)
    assert principal.may_use("tiny") and not principal.may_use("other")


async def test_a_revoke_is_seen_within_the_ttl_however_busy_the_key(store: KeyStore) -> None:
    key, secret = store.create_key(name="k", team="t")
    clock = Clock()
    auth = Authenticator(store, admin_key=None, cache_ttl_s=5, clock=clock)
    await auth.authenticate(_headers(secret))
    store.revoke_key(key.key_id)
    for step in range(49):  # a busy key: a request every 0.1 s keeps its cached answer
        clock.now = step * 0.1
        await auth.authenticate(_headers(secret))
    clock.now = 5.0
    with pytest.raises(AuthenticationError, match="revoked"):
        await auth.authenticate(_headers(secret))


async def test_concurrent_requests_of_one_key_share_one_lookup(store: KeyStore) -> None:
    _, secret = store.create_key(name="k", team="t")
    lookups = 0
    find = store.find

    def counting(value: str) -> object:
        nonlocal lookups
        lookups += 1
        return find(value)

    store.find = counting  # type: ignore[method-assign]
    auth = Authenticator(store, admin_key=None, cache_ttl_s=5)
    principals = await asyncio.gather(*(auth.authenticate(_headers(secret)) for _ in range(50)))
    assert lookups == 1 and len({p.key_id for p in principals}) == 1


async def test_known_keys_are_served_while_the_database_is_down(
    postgres_server: PostgresServer,
) -> None:
    database = Database(postgres_server.new_database())
    database.migrate()
    store = KeyStore(database)
    _, known = store.create_key(name="known", team="t")
    _, unseen = store.create_key(name="unseen", team="t")
    clock = Clock()
    auth = Authenticator(store, admin_key=None, cache_ttl_s=1, clock=clock)
    await auth.authenticate(_headers(known))
    postgres_server.stop()
    try:
        clock.now = 10.0  # long expired: the lookup fails, the last answer stands
        assert (await auth.authenticate(_headers(known))).team == "t"
        assert auth.db_unavailable
        with pytest.raises(AuthUnavailableError):
            await auth.authenticate(_headers(unseen))
    finally:
        postgres_server.start()
    clock.now = 20.0
    assert (await auth.authenticate(_headers(unseen))).team == "t"
    assert not auth.db_unavailable
    database.dispose()


@pytest.mark.parametrize(
    "header",
    [b"", b"Bearer", b"Bearer \x00\x01", b"Bearer a\x7fb", b"Token abc", b"Bearer a b"],
)
async def test_malformed_headers_are_401_before_any_lookup(header: bytes) -> None:
    auth = Authenticator(None, admin_key=ADMIN, cache_ttl_s=5)
    with pytest.raises(AuthenticationError):
        await auth.authenticate([(b"authorization", header)])


async def test_a_flood_of_made_up_keys_does_not_push_out_known_ones(
    postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of issue 12: known and unknown lookups shared one bound, so made-up keys pushed
    a known key out and, with the database down, it got 503."""
    monkeypatch.setattr("blaze_ai.tenancy.auth.MAX_CACHED_KEYS", 20)
    database = Database(postgres_server.new_database())
    database.migrate()
    store = KeyStore(database)
    _, known = store.create_key(name="known", team="t")
    auth = Authenticator(store, admin_key=None, cache_ttl_s=1, clock=Clock())
    await auth.authenticate(_headers(known))
    for i in range(50):
        with pytest.raises(AuthenticationError):
            await auth.authenticate(_headers(f"sk-blz-{i:08d}" + "x" * 35))
    postgres_server.stop()
    try:
        assert (await auth.authenticate(_headers(known))).team == "t"
    finally:
        postgres_server.start()
    database.dispose()
