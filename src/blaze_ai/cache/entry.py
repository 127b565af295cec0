"""Cache entries and the level protocol: what every cache level stores and answers.

An entry is opaque bytes plus the few fields every level needs (kind, model, expiry), so one
level implementation stores text answers today and images later. Expiry is wall-clock time
(seconds since the epoch) because entries outlive the process that wrote them (disk, Redis).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from blaze_ai.cache.stats import LevelStats


class Level(StrEnum):
    """The cache levels, fastest first."""

    MEMORY = "memory"
    DISK = "disk"
    REDIS = "redis"


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where one answer is stored.

    Attributes:
        model: the served model's canonical name (entries are cleared per model).
        digest: hex SHA-256 of the canonical key material (see :mod:`blaze_ai.cache.keys`).
    """

    model: str
    digest: str

    def __str__(self) -> str:
        return f"{self.model}:{self.digest}"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One stored answer.

    Attributes:
        kind: what ``payload`` encodes (``text``; ``images`` later), so a reader never decodes
            one kind as another.
        model: the served model's canonical name.
        payload: the encoded answer (see :mod:`blaze_ai.cache.codec`).
        expires_at: wall-clock time (seconds since the epoch) after which the entry is gone.
    """

    kind: str
    model: str
    payload: bytes
    expires_at: float

    def expired(self, now: float) -> bool:
        """True once ``now`` (wall-clock seconds) has reached ``expires_at``."""
        return now >= self.expires_at

    def encode(self) -> bytes:
        """``{"kind","model","expires_at"}`` as one JSON line, a newline, then the payload."""
        head = {"kind": self.kind, "model": self.model, "expires_at": self.expires_at}
        return json.dumps(head, separators=(",", ":")).encode() + b"\n" + self.payload

    @classmethod
    def decode(cls, data: bytes) -> CacheEntry:
        """The inverse of :meth:`encode`.

        Raises:
            ValueError: ``data`` is not an encoded entry.
        """
        head_bytes, sep, payload = data.partition(b"\n")
        if not sep:
            raise ValueError("not a cache entry")
        head = json.loads(head_bytes)
        return cls(str(head["kind"]), str(head["model"]), payload, float(head["expires_at"]))


class CacheLevel(Protocol):
    """One cache level. No method raises for a failure of the store behind it: a failure
    counts as a miss (``get``), a skipped write (``set``) or ``None`` (``clear``)."""

    level: Level

    async def start(self) -> None:
        """Open files or create clients (no network round trip needed)."""
        ...

    async def stop(self) -> None:
        """Close everything :meth:`start` opened."""
        ...

    async def get(self, key: CacheKey) -> CacheEntry | None:
        """The live entry stored under ``key``, or None."""
        ...

    async def set(self, key: CacheKey, entry: CacheEntry) -> None:
        """Store ``entry`` under ``key`` until ``entry.expires_at``."""
        ...

    async def clear(self, model: str | None) -> int | None:
        """Drop every entry (of ``model`` only, when given); return how many, None on failure."""
        ...

    async def stats(self) -> LevelStats:
        """Current figures."""
        ...
