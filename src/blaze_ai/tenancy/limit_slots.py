"""``max_parallel`` slots: requests of one subject (a key or a team) in progress at once.

A request takes one slot of each subject it counts against (its key, its team), all or none.
In one process (:class:`MemorySlots`) a slot is a count per subject. In Redis
(:class:`RedisSlots`), shared by every process, a subject's slots are a sorted set of leases
(member: the request's lease, score: when the lease expires); one Lua script drops the expired
leases, counts the others and adds the lease to every set if each is under its limit,
atomically; another removes it (``ZREM``). A process that dies mid-request frees its slots when
their leases expire.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

from redis.asyncio import Redis

TAKE_SCRIPT = """
local now, expires_at, lease, ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[4 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, expires_at, lease)
  redis.call('PEXPIRE', key, ttl_ms)
end
return 0
"""
"""KEYS: the subjects' sets; ARGV: now, the lease's expiry (Unix seconds), the lease, the sets'
own time to live in ms (a lease's, so an idle subject's set vanishes), then each set's limit.
Returns 0 when taken, else the (1-based) index of the first set that is full."""

RELEASE_SCRIPT = """
for _, key in ipairs(KEYS) do
  redis.call('ZREM', key, ARGV[1])
end
return 0
"""
"""KEYS: the subjects' sets; ARGV[1]: the lease to remove from each."""


class SlotStore(Protocol):
    """Where ``max_parallel`` slots are counted."""

    async def take(self, wanted: Sequence[tuple[str, int]], lease: str) -> int | None:
        """Take one slot of each ``(subject, limit)`` as ``lease`` (unique per request), all or
        none. Returns None when taken, else ``i``: ``wanted[i]`` has all its slots taken (and
        nothing was taken)."""
        ...

    async def release(self, subjects: Sequence[str], lease: str) -> None:
        """Give back the slots of ``subjects`` taken as ``lease``; a lease not (or no longer)
        held is ignored, so releasing twice frees one slot."""
        ...


class MemorySlots:
    """Slots counted in this process: ``subject -> leases held``."""

    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def take(self, wanted: Sequence[tuple[str, int]], lease: str) -> int | None:
        """See :meth:`SlotStore.take`."""
        held = self._held
        for i, (subject, limit) in enumerate(wanted):
            if len(held.get(subject, ())) >= limit:
                return i
        for subject, _ in wanted:
            leases = held.get(subject)
            if leases is None:
                held[subject] = {lease}
            else:
                leases.add(lease)
        return None

    async def release(self, subjects: Sequence[str], lease: str) -> None:
        """See :meth:`SlotStore.release`."""
        for subject in subjects:
            leases = self._held.get(subject)
            if leases is not None:
                leases.discard(lease)
                if not leases:
                    del self._held[subject]

    def taken(self, subject: str) -> int:
        """Slots of ``subject`` taken now."""
        return len(self._held.get(subject, ()))


class RedisSlots:
    """Slots as leases in Redis sorted sets, shared by every process using that Redis.

    Args:
        client: the redis-py client (its calls raise on a failing Redis).
        key_prefix: the sets' keys are ``<key_prefix>:parallel:<subject>``.
        lease_s: seconds a lease lives when it is never released.
        clock: wall-clock time source, in seconds (lease expiry; the same in every process).
    """

    def __init__(
        self, client: Redis, *, key_prefix: str, lease_s: float, clock: Callable[[], float]
    ) -> None:
        self._prefix = f"{key_prefix}:parallel:"
        self._lease_s = lease_s
        self._lease_ms = max(1, math.ceil(lease_s * 1000))
        self._clock = clock
        self._take = client.register_script(TAKE_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    async def take(self, wanted: Sequence[tuple[str, int]], lease: str) -> int | None:
        """See :meth:`SlotStore.take`. One call to Redis; raises redis-py's errors when Redis
        fails."""
        now = self._clock()
        args: list[str | float] = [now, now + self._lease_s, lease, self._lease_ms]
        args.extend(limit for _, limit in wanted)
        keys = [self._prefix + subject for subject, _ in wanted]
        full = int(await self._take(keys=keys, args=args))
        return None if full == 0 else full - 1

    async def release(self, subjects: Sequence[str], lease: str) -> None:
        """See :meth:`SlotStore.release`. One call to Redis; raises redis-py's errors when
        Redis fails."""
        await self._release(keys=[self._prefix + s for s in subjects], args=[lease])
