"""Served models (model groups) and what a request brings for routing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from blaze_ai.config.schema import ModelConfig, RetryConfig
from blaze_ai.gateway.balancers import Balancer, LeastRequest
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.observability.request import RequestRecord
from blaze_ai.tenancy.meter import Meter

_DEFAULT_SESSION_HEADER = str(ModelConfig.model_fields["session_header"].default).lower()


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """What a request brings besides its body: what session affinity reads, and its account.

    Attributes:
        headers: request headers, names in lower case.
        client_ip: the peer address, when known.
        meter: the request's account when auth is on (its principal, limits and usage);
            None: anonymous (auth off).
        record: what the request did, for its metrics and trace (None: not observed).
    """

    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    client_ip: str | None = None
    meter: Meter | None = None
    record: RequestRecord | None = None


@dataclass(slots=True)
class GroupCounters:
    """Routing counters of one served model since start, changed by the router.

    Attributes:
        retries: attempts made after a failed attempt on this model.
        fallbacks: fallback models tried for requests to this model.
        admission_rejections: requests for this model refused at admission (429).
    """

    retries: int = 0
    fallbacks: int = 0
    admission_rejections: int = 0


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """A served model: its names, deployments, balancer, retry policy and fallbacks.

    Attributes:
        name: the canonical id listed by ``/v1/models``.
        aliases: other names that resolve to this model.
        deployments: the engines that serve it (at least one).
        created: Unix time (seconds) reported as the model's ``created``.
        balancer: chooses among routable deployments.
        retry: retries on another deployment (the model's ``retry`` settings).
        fallbacks: other served models tried, in order, when this one cannot answer.
        session_header: header (lower case) holding the session key for ``ring_hash``.
        counters: its routing counters (retries, fallbacks, admission rejections).
    """

    name: str
    aliases: tuple[str, ...]
    deployments: tuple[Deployment, ...]
    created: int
    balancer: Balancer = field(default_factory=LeastRequest)
    retry: RetryConfig = field(default_factory=RetryConfig)
    fallbacks: tuple[str, ...] = ()
    session_header: str = _DEFAULT_SESSION_HEADER
    counters: GroupCounters = field(default_factory=GroupCounters, compare=False)

    @property
    def ready(self) -> bool:
        """True when at least one deployment is routable."""
        return any(d.routable for d in self.deployments)

    def candidates(self, exclude: Sequence[str] = ()) -> list[Deployment]:
        """Deployments that can take a request now, except those named in ``exclude``."""
        return [
            d for d in self.deployments if d.name not in exclude and d.routable and not d.saturated
        ]

    def session_key(self, ctx: RoutingContext, user: str | None) -> str | None:
        """The ring_hash key: the session header, else the ``user`` field, else the client IP."""
        return ctx.headers.get(self.session_header) or user or ctx.client_ip

    def seconds_until_available(self) -> float:
        """Seconds until the first deployment's breaker half-opens or Retry-After ends."""
        waits = [d.seconds_until_available() for d in self.deployments]
        positive = [w for w in waits if w > 0]
        return min(positive) if positive else 1.0
