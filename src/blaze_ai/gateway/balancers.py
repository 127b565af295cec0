"""Load-balancing strategies, by Envoy's and NGINX's names.

Each strategy is one small class with one method, ``choose(candidates, key)``; candidates are the
deployments that can take a request now (healthy, breaker admitting, not saturated), never empty.
``key`` is the request's session key (used by ``ring_hash`` only). A strategy name appears only
in config and in :data:`BALANCERS`, resolved once at start-up.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from blaze_ai.config.schema import ModelConfig
from blaze_ai.gateway.deployment import Deployment


class Balancer(Protocol):
    """Chooses one deployment among candidates."""

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """One of ``candidates`` (a non-empty sequence)."""
        ...


class RoundRobin:
    """Each candidate in turn."""

    def __init__(self) -> None:
        self._next = 0

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """The next candidate after the previous choice."""
        chosen = candidates[self._next % len(candidates)]
        self._next += 1
        return chosen


class WeightedRoundRobin:
    """Smooth weighted round robin, as NGINX does it (``ngx_http_upstream_get_peer``).

    Every choice adds each candidate's weight to its running score, picks the highest score and
    subtracts the total weight from it: weights 1:2 give ``b a b b a b``... never bursts.
    """

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """The candidate whose running score is highest."""
        total = 0.0
        best: Deployment | None = None
        for deployment in candidates:
            score = self._current.get(deployment.name, 0.0) + deployment.weight
            self._current[deployment.name] = score
            total += deployment.weight
            if best is None or score > self._current[best.name]:
                best = deployment
        assert best is not None
        self._current[best.name] -= total
        return best


class LeastRequest:
    """Fewest requests in flight; ties go to the one that served fewer, then at random."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """The least busy candidate."""
        ranked = [((d.in_flight, d.counters.requests), d) for d in candidates]
        least = min(rank for rank, _ in ranked)
        return self._rng.choice([d for rank, d in ranked if rank == least])


class PowerOfTwo:
    """Two random candidates, the one with fewer in flight wins (Mitzenmacher's "power of two
    choices"; Ray Serve's default router, ``pow_2_router.py``)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """The less loaded of two random candidates."""
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(list(candidates), 2)
        if a.in_flight == b.in_flight:
            return self._rng.choice((a, b))
        return a if a.in_flight < b.in_flight else b


class LatencyEWMA:
    """Lowest ``EWMA latency × (in-flight + 1)``, like Finagle's and Linkerd's peak-EWMA balancers.

    A deployment never measured is tried first; a share ``exploration`` of choices is made at
    random so that a deployment that was slow and recovered gets measured (and traffic) again.
    """

    def __init__(self, exploration: float, rng: random.Random | None = None) -> None:
        self._exploration = exploration
        self._rng = rng or random.Random()

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """The candidate with the lowest expected latency."""
        unmeasured = [d for d in candidates if d.counters.ewma_latency_s is None]
        if unmeasured:
            return self._rng.choice(unmeasured)
        if self._rng.random() < self._exploration:
            return self._rng.choice(list(candidates))
        return min(candidates, key=lambda d: (d.counters.ewma_latency_s or 0.0) * (d.in_flight + 1))


@dataclass(frozen=True, slots=True)
class _Ring:
    points: list[int]
    owners: list[Deployment]


class RingHash:
    """Consistent hashing with virtual nodes (Karger et al. 1997; ketama's MD5 points).

    Each deployment owns ``virtual_nodes × weight`` points on a 64-bit ring; a key goes to the
    owner of the first point at or after its hash. Adding one deployment to N moves about 1/(N+1)
    of the keys. A request without a key is placed at random.
    """

    def __init__(self, virtual_nodes: int, rng: random.Random | None = None) -> None:
        self._virtual_nodes = virtual_nodes
        self._rng = rng or random.Random()
        self._rings: OrderedDict[tuple[str, ...], _Ring] = OrderedDict()

    def choose(self, candidates: Sequence[Deployment], key: str | None) -> Deployment:
        """The owner of ``key`` on the ring of the current candidates."""
        if key is None:
            return self._rng.choice(list(candidates))
        ring = self._ring(candidates)
        index = bisect.bisect_left(ring.points, _hash64(key))
        return ring.owners[index % len(ring.owners)]

    def _ring(self, candidates: Sequence[Deployment]) -> _Ring:
        names = tuple(d.name for d in candidates)
        ring = self._rings.get(names)
        if ring is None:
            points = sorted(
                (_hash64(f"{d.name}#{i}"), d)
                for d in candidates
                for i in range(max(1, round(self._virtual_nodes * d.weight)))
            )
            ring = _Ring([p for p, _ in points], [d for _, d in points])
            self._rings[names] = ring
            if len(self._rings) > 64:  # one ring per set of healthy deployments seen lately
                self._rings.popitem(last=False)
        return ring


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode(), usedforsecurity=False).digest()[:8], "big")


BalancerFactory = Callable[[ModelConfig, random.Random | None], Balancer]

BALANCERS: dict[str, BalancerFactory] = {
    "round_robin": lambda c, rng: RoundRobin(),
    "weighted_round_robin": lambda c, rng: WeightedRoundRobin(),
    "least_request": lambda c, rng: LeastRequest(rng),
    "power_of_two": lambda c, rng: PowerOfTwo(rng),
    "latency_ewma": lambda c, rng: LatencyEWMA(c.ewma_exploration, rng),
    "ring_hash": lambda c, rng: RingHash(c.virtual_nodes, rng),
}
"""Strategy name (as in config) -> factory of its balancer from the model's settings."""


def make_balancer(config: ModelConfig, rng: random.Random | None = None) -> Balancer:
    """The balancer of ``config.strategy``, with the model's ``virtual_nodes`` and
    ``ewma_exploration``. Raises KeyError for an unknown name (config prevents it)."""
    return BALANCERS[config.strategy](config, rng)
