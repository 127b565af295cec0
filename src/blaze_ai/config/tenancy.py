"""Tenancy settings: API keys and admin authentication (``auth``), per-key and per-team rate
limits (``limits``), and usage accounting (``usage``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from blaze_ai.config.base import StrictModel as _Strict

DEFAULT_DATABASE_URL = "sqlite:///~/.local/share/blaze/blaze.db"


class AuthConfig(_Strict):
    """Who may call Blaze.

    Attributes:
        enabled: require an API key on every route outside the public allowlist (``/health``,
            ``/ready``). None (the default): on when an admin key is configured
            (``BLAZE_ADMIN_KEY`` or ``admin_key_file``), off otherwise.
        admin_key_file: a file holding the admin key (its first line); ``BLAZE_ADMIN_KEY``
            wins when both are set. The admin key may call ``/admin/*`` and every model.
        allow_unauthenticated: with auth off, Blaze refuses to start on a host other than a
            loopback address unless this is true (and then warns at every start).
        database_url: SQLAlchemy URL of the database holding keys, teams and usage: a SQLite
            file by default (``~`` is expanded), or ``postgresql+psycopg://user:pw@host/db``.
            Several Blaze processes share keys and usage by pointing at the same database.
        cache_ttl_s: seconds a process keeps a key it looked up; an update, revoke or block
            made through any process reaches every other one within this time. When the
            database cannot be read, a cached key keeps being served.
    """

    enabled: bool | None = None
    admin_key_file: Path | None = None
    allow_unauthenticated: bool = False
    database_url: str = DEFAULT_DATABASE_URL
    cache_ttl_s: float = Field(default=5.0, ge=0)


class LimitsConfig(_Strict):
    """How the per-key and per-team limits (``rpm``, ``tpm``, ``max_parallel``) are counted.

    Attributes:
        redis_url: counters in this Redis (``redis://host:port/db``), shared by every Blaze
            process pointing at it; None: counters in this process only.
        window_s: the window of ``rpm`` and ``tpm``, in whole seconds (a fixed window, as OpenAI's
            per-minute limits). Tests shorten it.
        default_max_tokens: tokens reserved for the completion of a request that sets no
            ``max_tokens`` (reconciled to the real count when it ends).
        parallel_lease_s: a ``max_parallel`` slot held in Redis expires after this many
            seconds, so a process that dies does not keep its slots forever.
    """

    redis_url: str | None = None
    window_s: int = Field(default=60, ge=1)
    default_max_tokens: int = Field(default=1024, ge=1)
    parallel_lease_s: float = Field(default=900.0, gt=0)


class UsageConfig(_Strict):
    """Usage records (one per finished request, written to ``auth.database_url`` in batches).

    Attributes:
        enabled: write usage records (only when auth is on: a record names its key and team).
        queue_max: records held while waiting for the database; beyond it new records are
            dropped and counted (the request path never waits on the database).
        batch_size: most records written in one transaction.
        flush_interval_s: seconds between two writes while records wait.
    """

    enabled: bool = True
    queue_max: int = Field(default=10_000, ge=1)
    batch_size: int = Field(default=500, ge=1)
    flush_interval_s: float = Field(default=1.0, gt=0)
