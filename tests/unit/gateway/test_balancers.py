"""Balancing strategies on scripted deployments (the HTTP versions are in test_routing.py)."""

from __future__ import annotations

import random
from collections import Counter
from contextlib import ExitStack

from blaze_ai.gateway.balancers import (
    BALANCERS,
    LatencyEWMA,
    LeastRequest,
    PowerOfTwo,
    RingHash,
    RoundRobin,
    WeightedRoundRobin,
)
from blaze_ai.gateway.deployment import Deployment
from tests.fakes import ScriptedEngine


def deployments(n: int, weights: list[float] | None = None) -> list[Deployment]:
    weights = weights or [1.0] * n
    return [Deployment(f"d{i}", ScriptedEngine(f"d{i}"), weight=w) for i, w in enumerate(weights)]  # type: ignore[arg-type]


def busy(deployment: Deployment, attempts: int, stack: ExitStack) -> None:
    """Hold ``attempts`` attempts open on ``deployment`` until ``stack`` closes."""
    for _ in range(attempts):
        stack.enter_context(deployment.attempt())


def test_the_six_strategies_are_registered() -> None:
    assert set(BALANCERS) == {
        "round_robin",
        "weighted_round_robin",
        "least_request",
        "power_of_two",
        "latency_ewma",
        "ring_hash",
    }


def test_round_robin_cycles() -> None:
    ds = deployments(3)
    balancer = RoundRobin()
    assert [balancer.choose(ds, None).name for _ in range(6)] == ["d0", "d1", "d2"] * 2


def test_smooth_weighted_round_robin_interleaves() -> None:
    ds = deployments(2, [1, 2])
    balancer = WeightedRoundRobin()
    picks = [balancer.choose(ds, None).name for _ in range(600)]
    assert picks[:3] == ["d1", "d0", "d1"]
    assert Counter(picks) == {"d0": 200, "d1": 400}


def test_least_request_prefers_idle_and_breaks_ties_at_random() -> None:
    ds = deployments(3)
    balancer = LeastRequest(random.Random(1))
    with ExitStack() as stack:
        busy(ds[0], 2, stack)
        picks = Counter(balancer.choose(ds, None).name for _ in range(300))
    assert picks["d0"] == 0
    assert picks["d1"] > 100 and picks["d2"] > 100  # not list order


def test_power_of_two_never_picks_the_busiest_of_two() -> None:
    ds = deployments(2)
    balancer = PowerOfTwo(random.Random(0))
    with ExitStack() as stack:
        busy(ds[1], 5, stack)
        assert {balancer.choose(ds, None).name for _ in range(50)} == {"d0"}


def test_latency_ewma_prefers_fast_but_explores() -> None:
    ds = deployments(2)
    ds[0].record_success(0.01)
    ds[1].record_success(0.10)
    balancer = LatencyEWMA(exploration=0.1, rng=random.Random(0))
    picks = Counter(balancer.choose(ds, None).name for _ in range(1000))
    assert picks["d0"] > 900
    assert picks["d1"] > 20  # exploration keeps measuring the slow one


def test_latency_ewma_tries_unmeasured_first() -> None:
    ds = deployments(2)
    ds[0].record_success(0.01)
    assert LatencyEWMA(exploration=0.05, rng=random.Random(0)).choose(ds, None).name == "d1"


def test_ring_hash_is_sticky_and_moves_about_one_nth_when_growing() -> None:
    balancer = RingHash(virtual_nodes=160)
    keys = [f"session-{i}" for i in range(1000)]
    three = deployments(4)[:3]
    before = {k: balancer.choose(three, k).name for k in keys}
    assert all(balancer.choose(three, k).name == before[k] for k in keys)  # sticky
    shares = Counter(before.values())
    assert min(shares.values()) > 200  # roughly even
    after = {k: balancer.choose(deployments(4), k).name for k in keys}
    moved = sum(before[k] != after[k] for k in keys)
    assert moved <= 1000 * 0.25 * 1.3  # ideal 1/4 of the keys
    assert all(after[k] == "d3" for k in keys if before[k] != after[k])  # only to the new one


def test_ring_hash_weights() -> None:
    balancer = RingHash(virtual_nodes=160)
    picks = Counter(balancer.choose(deployments(2, [1, 3]), f"k{i}").name for i in range(4000))
    assert 0.18 < picks["d0"] / 4000 < 0.32
