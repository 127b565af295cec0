"""The key store on SQLite and PostgreSQL: secrets, lookups, the key and team lifecycles,
validation, and that a secret is never stored, shown or logged."""

from __future__ import annotations

import logging
import string
import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from blaze_ai.errors import ConflictError, InvalidRequestError, NotFoundError
from blaze_ai.tenancy import keys
from blaze_ai.tenancy.db import Database
from blaze_ai.tenancy.keys import KeyStore, hash_secret, key_id_of, new_secret
from blaze_ai.tenancy.tables import metadata
from blaze_ai.tenancy.types import Limits
from tests.fakes import FakeClock
from tests.unit.tenancy.conftest import START_S


def every_value(database: Database) -> Iterator[str]:
    """Every column of every row of every table, as text."""
    with database.read() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(sa.select(table)):
                yield from (str(value) for value in row)


def test_secrets_are_prefixed_urlsafe_and_fifty_characters() -> None:
    secret = new_secret()
    assert secret.startswith("sk-blz-") and len(secret) == 50
    assert set(secret[7:]) <= set(string.ascii_letters + string.digits + "-_")
    assert key_id_of(secret) == secret[:15]
    assert hash_secret(secret) == hash_secret(secret) and len(hash_secret(secret)) == 64
    assert new_secret() != secret


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sk-blz-",
        "sk-blz-" + "a" * 42,
        "sk-blz-" + "a" * 44,
        "sk-xyz-" + "a" * 43,
        "SK-BLZ-" + "a" * 43,
        "sk-blz-" + "a" * 42 + "=",
        "sk-blz-" + "a" * 42 + "\x00",
        "sk-blz-" + "a" * 42 + "é",
        "sk-blz-' OR 1=1 --" + "a" * 25,
        "Bearer sk-blz-" + "a" * 36,
    ],
)
def test_key_id_of_refuses_what_is_not_a_secret(text: str) -> None:
    assert key_id_of(text) is None


def test_a_key_is_found_by_its_secret_with_its_team(store: KeyStore) -> None:
    store.create_team("acme", limits=Limits(rpm=100, tpm=10_000, max_parallel=4))
    key, secret = store.create_key(
        name="ci",
        team="acme",
        models=["gpt-*", "tiny"],
        limits=Limits(rpm=10),
        expires_at=START_S + 3600,
        metadata={"owner": "ops"},
    )
    assert key.key_id == key_id_of(secret)
    assert (key.name, key.team, key.models) == ("ci", "acme", ("gpt-*", "tiny"))
    assert key.limits == Limits(rpm=10) and key.expires_at == START_S + 3600
    assert key.metadata == {"owner": "ops"} and key.created_at == START_S
    assert not key.disabled and key.revoked_at is None and key.last_used_at is None
    match = store.find(secret)
    assert match is not None
    assert match.key == key
    assert match.team.name == "acme"
    assert match.team.limits == Limits(rpm=100, tpm=10_000, max_parallel=4)


def test_create_key_creates_its_team_without_limits(store: KeyStore) -> None:
    key, _ = store.create_key(name="k", team="new-team")
    team = store.get_team("new-team")
    assert team.limits == Limits() and not team.disabled and team.created_at == START_S
    assert [k.key_id for k in store.list_keys("new-team")] == [key.key_id]


def test_a_wrong_secret_with_the_right_key_id_is_not_found(store: KeyStore) -> None:
    _, secret = store.create_key(name="k", team="t")
    last = "A" if secret[-1] != "A" else "B"
    assert store.find(secret[:-1] + last) is None
    assert store.find(secret[:15] + new_secret()[15:]) is None
    assert store.find(new_secret()) is None


def test_revoked_disabled_and_expired_keys_are_still_found(
    store: KeyStore, clock: FakeClock
) -> None:
    revoked, revoked_secret = store.create_key(name="r", team="t")
    disabled, disabled_secret = store.create_key(name="d", team="t")
    _, expired_secret = store.create_key(name="e", team="t", expires_at=START_S + 1)
    clock.advance(10)
    store.revoke_key(revoked.key_id)
    store.update_key(disabled.key_id, {"disabled": True})
    found = {s: store.find(s) for s in (revoked_secret, disabled_secret, expired_secret)}
    assert found[revoked_secret].key.revoked_at == START_S + 10  # type: ignore[union-attr]
    assert found[disabled_secret].key.disabled  # type: ignore[union-attr]
    assert found[expired_secret].key.expires_at == START_S + 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "text",
    [
        "sk-blz-' OR 1=1 --",
        "sk-blz-' OR '1'='1' --" + "x" * 28,
        "sk-blz-" + "x" * 10_000,
        "x" * 10_240,
        "sk-blz-\x00\x01\x02\r\n" + "a" * 38,
        "sk-blz-\udc80" + "a" * 42,
        "",
        "; DROP TABLE api_keys; --",
    ],
)
def test_malformed_secrets_return_none_without_a_query_and_never_raise(
    store: KeyStore, database: Database, text: str
) -> None:
    store.create_key(name="k", team="t")
    statements: list[str] = []
    sa.event.listen(database.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    started = time.perf_counter()
    assert store.find(text) is None
    assert time.perf_counter() - started < 0.5
    assert statements == []
    assert len(store.list_keys()) == 1
    assert statements  # the listener does see queries


def test_the_secret_is_stored_only_as_its_hash(
    store: KeyStore, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        key, secret = store.create_key(name="k", team="t")
        store.find(secret)
        store.update_key(key.key_id, {"rpm": 5})
        store.revoke_key(key.key_id)
    values = list(every_value(database))
    assert hash_secret(secret) in values
    assert not [v for v in values if secret[15:] in v]
    assert key.key_id in values
    assert secret not in repr(store.list_keys(include_revoked=True)) + repr(key)
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert key.key_id in logged
    assert secret[15:] not in logged


def test_keys_are_listed_by_team_and_revoked_ones_on_request(
    store: KeyStore, clock: FakeClock
) -> None:
    a, _ = store.create_key(name="a", team="one")
    clock.advance(1)
    b, _ = store.create_key(name="b", team="two")
    clock.advance(1)
    c, _ = store.create_key(name="c", team="one")
    store.revoke_key(c.key_id)
    assert [k.key_id for k in store.list_keys()] == [a.key_id, b.key_id]
    assert [k.key_id for k in store.list_keys("one")] == [a.key_id]
    assert [k.key_id for k in store.list_keys("one", include_revoked=True)] == [a.key_id, c.key_id]
    assert store.list_keys("nobody") == []


def test_update_key_changes_the_given_fields_only(store: KeyStore) -> None:
    key, secret = store.create_key(name="k", team="t", limits=Limits(rpm=1, tpm=2))
    changed = store.update_key(
        key.key_id,
        {
            "name": "renamed",
            "models": ["tiny"],
            "rpm": None,
            "max_parallel": 3,
            "expires_at": START_S + 60,
            "disabled": True,
            "metadata": {"a": [1, 2]},
        },
    )
    assert changed.name == "renamed" and changed.models == ("tiny",)
    assert changed.limits == Limits(rpm=None, tpm=2, max_parallel=3)
    assert changed.expires_at == START_S + 60 and changed.disabled
    assert changed.metadata == {"a": [1, 2]}
    assert store.get_key(key.key_id) == changed
    assert store.find(secret).key == changed  # type: ignore[union-attr]
    assert store.update_key(key.key_id, {}) == changed
    assert store.update_key(key.key_id, {"disabled": False}).disabled is False


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"secret_sha256": "0" * 64}, "secret_sha256"),
        ({"team": "other"}, "team"),
        ({"revoked_at": None}, "revoked_at"),
        ({"rpm": 0}, "rpm"),
        ({"tpm": -1}, "tpm"),
        ({"max_parallel": 1.5}, "max_parallel"),
        ({"rpm": True}, "rpm"),
        ({"rpm": 2**31}, "rpm"),
        ({"tpm": "10"}, "tpm"),
        ({"models": "gpt-*"}, "models"),
        ({"models": ["ok", 3]}, "models[1]"),
        ({"models": ["a\nb"]}, "models[0]"),
        ({"name": ""}, "name"),
        ({"name": "x" * 257}, "name"),
        ({"name": "bad\x00name"}, "name"),
        ({"expires_at": float("inf")}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"disabled": 1}, "disabled"),
        ({"metadata": [1]}, "metadata"),
        ({"metadata": {"x": float("nan")}}, "metadata"),
        ({"metadata": {"x": "y" * 20_000}}, "metadata"),
    ],
)
def test_update_key_refuses_unknown_fields_and_bad_values(
    store: KeyStore, changes: dict[str, object], param: str
) -> None:
    key, _ = store.create_key(name="k", team="t")
    with pytest.raises(InvalidRequestError) as caught:
        store.update_key(key.key_id, changes)
    assert caught.value.param == param
    assert store.get_key(key.key_id) == key


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"team": ""}, "team"),
        ({"team": "t" * 129}, "team"),
        ({"team": "tab\tteam"}, "team"),
        ({"team": " padded"}, "team"),
        ({"name": "\x1b[31mred"}, "name"),
        ({"models": "tiny"}, "models"),
        ({"limits": Limits(rpm=0)}, "rpm"),
        ({"expires_at": float("nan")}, "expires_at"),
        ({"metadata": {1: "x"}}, "metadata"),
    ],
)
def test_create_key_validates_its_fields(
    store: KeyStore, kwargs: dict[str, object], param: str
) -> None:
    arguments: dict[str, object] = {"name": "k", "team": "t", **kwargs}
    with pytest.raises(InvalidRequestError) as caught:
        store.create_key(**arguments)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert store.list_keys() == [] and store.list_teams() == []


def test_team_names_may_be_any_printable_text_but_a_slash(store: KeyStore) -> None:
    """A ``/`` is refused: a team name is a path segment of ``/admin/teams/{name}`` (a team
    ``a/b`` could be created but never shown, changed or deleted over HTTP)."""
    name = "Équipe 7 - ops — 東京"
    store.create_key(name="clé", team=name)
    assert store.get_team(name).name == name
    assert store.create_team("t" * 128).name == "t" * 128
    with pytest.raises(InvalidRequestError) as caught:
        store.create_team("a/b")
    assert caught.value.param == "name"


def test_revoking_twice_keeps_the_first_time(store: KeyStore, clock: FakeClock) -> None:
    key, secret = store.create_key(name="k", team="t")
    clock.advance(5)
    first = store.revoke_key(key.key_id)
    clock.advance(5)
    assert store.revoke_key(key.key_id) == first
    assert first.revoked_at == START_S + 5
    assert store.find(secret).key.revoked_at == START_S + 5  # type: ignore[union-attr]


def test_unknown_keys_are_not_found_and_named_by_key_id_only(store: KeyStore) -> None:
    secret = new_secret()
    for call in (
        lambda: store.get_key(secret),
        lambda: store.update_key(secret, {"rpm": 1}),
        lambda: store.revoke_key(secret),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert caught.value.status_code == 404 and caught.value.code == "not_found"
        assert secret[:15] in caught.value.message
        assert secret[15:] not in caught.value.message


def test_team_lifecycle(store: KeyStore, clock: FakeClock) -> None:
    team = store.create_team("acme", limits=Limits(tpm=1000), metadata={"plan": "pro"})
    assert team.limits == Limits(tpm=1000) and team.metadata == {"plan": "pro"}
    with pytest.raises(ConflictError) as caught:
        store.create_team("acme")
    assert caught.value.status_code == 409 and caught.value.code == "conflict"
    store.create_team("beta")
    assert [t.name for t in store.list_teams()] == ["acme", "beta"]
    updated = store.update_team("acme", {"rpm": 5, "tpm": None, "disabled": True})
    assert updated.limits == Limits(rpm=5) and updated.disabled
    assert store.get_team("acme") == updated
    with pytest.raises(InvalidRequestError) as bad:
        store.update_team("acme", {"name": "renamed"})
    assert bad.value.param == "name"
    key, secret = store.create_key(name="k", team="acme")
    assert store.find(secret).team == updated  # type: ignore[union-attr]
    with pytest.raises(ConflictError):
        store.delete_team("acme")
    store.revoke_key(key.key_id)
    store.delete_team("acme")
    assert [t.name for t in store.list_teams()] == ["beta"]
    with pytest.raises(NotFoundError):
        store.get_key(key.key_id)
    assert store.find(secret) is None
    for call in (
        lambda: store.get_team("acme"),
        lambda: store.update_team("acme", {"rpm": 1}),
        lambda: store.delete_team("acme"),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_touch_sets_last_used_and_never_moves_it_back(store: KeyStore) -> None:
    a, _ = store.create_key(name="a", team="t")
    b, _ = store.create_key(name="b", team="t")
    store.touch({})
    store.touch({a.key_id: START_S + 5, b.key_id: START_S + 7, "admin": START_S})
    assert store.get_key(a.key_id).last_used_at == START_S + 5
    assert store.get_key(b.key_id).last_used_at == START_S + 7
    store.touch({a.key_id: START_S + 1, b.key_id: START_S + 9})
    assert store.get_key(a.key_id).last_used_at == START_S + 5
    assert store.get_key(b.key_id).last_used_at == START_S + 9


def test_a_key_id_collision_draws_another_secret(
    store: KeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, first_secret = store.create_key(name="a", team="t")
    fresh = new_secret()
    colliding = first_secret[:15] + fresh[15:]
    draws = iter([colliding, fresh])
    monkeypatch.setattr(keys, "new_secret", lambda: next(draws))
    second, second_secret = store.create_key(name="b", team="t")
    assert second_secret == fresh and second.key_id == fresh[:15]
    assert store.find(first_secret).key == first  # type: ignore[union-attr]
    assert store.find(second_secret).key == second  # type: ignore[union-attr]


def test_concurrent_creates_for_a_new_team_all_succeed(store: KeyStore) -> None:
    barrier = threading.Barrier(6)
    made: list[str] = []
    errors: list[BaseException] = []

    def create(index: int) -> None:
        barrier.wait()
        try:
            made.append(store.create_key(name=f"k{index}", team="shared")[1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(store.list_keys("shared")) == 6 and len(store.list_teams()) == 1
    assert all(store.find(secret) is not None for secret in made)
