"""Served models and the deployments behind them."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from blaze_ai.engines.base import AnyEngine, EngineState
from blaze_ai.errors import NoHealthyDeploymentError

ROUTABLE_STATES = frozenset({EngineState.READY, EngineState.DEGRADED})


@dataclass(frozen=True, slots=True)
class Deployment:
    """One engine serving a model, named ``<model>/<index>`` in logs and metrics."""

    name: str
    engine: AnyEngine

    @property
    def routable(self) -> bool:
        """True when the engine can take requests now."""
        return self.engine.state in ROUTABLE_STATES


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """A served model: the name clients send, its aliases, and its deployments.

    Attributes:
        name: the canonical id listed by ``/v1/models``.
        aliases: other names that resolve to this model.
        deployments: the engines that serve it (at least one).
        created: Unix time (seconds) reported as the model's ``created``.
    """

    name: str
    aliases: tuple[str, ...]
    deployments: tuple[Deployment, ...]
    created: int

    @property
    def ready(self) -> bool:
        """True when at least one deployment is routable."""
        return any(d.routable for d in self.deployments)

    def choose(self, rng: random.Random | None = None) -> Deployment:
        """The routable deployment with the fewest requests in flight (ties broken at random).

        Raises:
            NoHealthyDeploymentError: no deployment is routable.
        """
        candidates = [d for d in self.deployments if d.routable]
        if not candidates:
            raise NoHealthyDeploymentError(
                f"model {self.name} has no deployment ready to serve", retry_after_s=5.0
            )
        least = min(d.engine.load().in_flight for d in candidates)
        best: Sequence[Deployment] = [d for d in candidates if d.engine.load().in_flight == least]
        return (rng or random).choice(best)
