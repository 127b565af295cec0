"""A real PostgreSQL server on a free loopback port, for the tenancy tests (``make test``
installs Debian's ``postgresql`` package when it is missing).

``initdb`` into a temporary folder, then ``postgres`` in the foreground with fsync off: a
throwaway cluster that starts in about a second. PostgreSQL refuses to run as root, so under
root the cluster belongs to the ``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from blaze_ai.devtools.net import free_port

USER = "blaze"


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make test`, which installs postgresql")
    return found


def _as_owner() -> dict[str, Any]:
    """``Popen`` arguments that run a command as the ``postgres`` user when we are root
    (PostgreSQL refuses root); the process is then the server itself, so signals reach it."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL cluster; it can be stopped and started again on the same port."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database (no password: trust on loopback)."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        """Create an empty database; its SQLAlchemy URL (each test gets its own)."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        engine = sa.create_engine(
            self.url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT"
        )
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def _prepare(self) -> None:
        if self.data.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        cmd = [_binary("initdb"), "-D", str(self.data), "-U", USER, "-A", "trust", "--no-sync"]
        subprocess.run(cmd, check=True, capture_output=True, **_as_owner())

    def start(self, timeout_s: float = 30.0) -> None:
        self._prepare()
        cmd = [
            _binary("postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.folder),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ]
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, **_as_owner())
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                try:
                    with engine.connect() as connection:
                        connection.execute(sa.text("select 1"))
                    return
                except sa.exc.OperationalError:
                    if self.process.poll() is not None:
                        raise RuntimeError(f"postgres exited ({self.process.returncode})") from None
                    time.sleep(0.1)
        finally:
            engine.dispose()
        raise RuntimeError(f"postgres did not answer on port {self.port}")

    def stop(self) -> None:
        """A fast shutdown (SIGINT): open connections are cut, as when the database goes away."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(2)
            self.process.wait(timeout=30)
        self.process = None
