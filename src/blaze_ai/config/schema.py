"""The configuration schema.

Every model forbids unknown keys (``extra="forbid"``) so that a typo fails at start-up with a
message naming the key, instead of being silently ignored. With no file, :class:`Settings`
describes the embedded defaults: SmolLM2-135M-Instruct served as ``smollm2`` (alias ``default``)
and the digits diffusion model served as ``digits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from blaze_ai.config.base import BUILTIN_PREFIX
from blaze_ai.config.base import StrictModel as _Strict
from blaze_ai.config.cache import (
    CacheConfig,
    DiskCacheConfig,
    MemoryCacheConfig,
    ModelCacheConfig,
    RedisCacheConfig,
)
from blaze_ai.config.deployments import (
    DeploymentConfig,
    DiffusionDeploymentConfig,
    LLMDeploymentConfig,
    RemoteDeploymentConfig,
    SchedulerName,
)
from blaze_ai.config.observability import MetricsConfig, TracingConfig
from blaze_ai.config.tenancy import AuthConfig, LimitsConfig, UsageConfig

__all__ = [
    "BUILTIN_PREFIX",
    "AuthConfig",
    "BreakerConfig",
    "CacheConfig",
    "DeploymentConfig",
    "DiffusionDeploymentConfig",
    "DiskCacheConfig",
    "HealthCheckConfig",
    "LLMDeploymentConfig",
    "LimitsConfig",
    "MemoryCacheConfig",
    "MetricsConfig",
    "ModelCacheConfig",
    "ModelConfig",
    "RedisCacheConfig",
    "RemoteDeploymentConfig",
    "RetryConfig",
    "RuntimeConfig",
    "SchedulerName",
    "ServerConfig",
    "Settings",
    "Strategy",
    "TracingConfig",
    "UsageConfig",
]


class ServerConfig(_Strict):
    """HTTP server settings.

    Attributes:
        host: interface to bind.
        port: TCP port (0 picks a free one).
        max_body_bytes: largest accepted request body, in bytes; larger gets 413.
        request_timeout_s: overall deadline of one request, in seconds.
        max_pending_requests: requests admitted at once (running or queued); more get 429.
        log_format: ``text`` (key=value) or ``json`` (one JSON object per line).
        log_level: minimum level logged.
        image_url_ttl_s: how long an image returned as a ``url`` stays downloadable, in seconds.
        image_store_max_bytes: most bytes of such images kept; the oldest go first.
        max_header_bytes: largest request head (request line and headers), in bytes; a
            larger one gets 431 and the connection is closed.
        head_timeout_s: seconds from the first byte of a request until its head is complete;
            a slower client (slowloris) gets 408 and the connection is closed.
        body_read_timeout_s: most seconds between two reads of a request body while it is
            being received (not while the answer is sent); a stalled body gets 408 and the
            connection is closed, so it cannot hold a graceful shutdown either.
        keep_alive_timeout_s: seconds a connection may stay idle (no request in progress, no
            byte received) before it is closed, a new connection's wait for its first byte
            included. Keep it above clients' pool expiry (httpx, so the ``openai`` client: 5 s).
        max_connections: open connections served at once; the request on a connection beyond
            it gets 503 with ``Retry-After: 1`` and the connection is closed.

    None of the HTTP limits can cut a response that is being sent: a stream that lasts for
    minutes is bounded only by ``request_timeout_s``. The limits are enforced by Blaze's
    uvicorn protocol (``blaze_ai/server/protocol.py``).
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(default=600.0, gt=0)
    max_pending_requests: int = Field(default=256, ge=1)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    image_url_ttl_s: float = Field(default=3600.0, gt=0)
    image_store_max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    head_timeout_s: float = Field(default=10.0, gt=0)
    body_read_timeout_s: float = Field(default=30.0, gt=0)
    keep_alive_timeout_s: float = Field(default=15.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)


class RuntimeConfig(_Strict):
    """Process-wide settings of the local engines.

    Attributes:
        torch_threads: threads torch uses for one operation; None keeps torch's default
            (one per core). On a machine shared with other work, fewer is often faster.
        cache_dir: where converted model copies are kept (GGUF dequantized once to safetensors).
        image_pipelines_max_bytes: memory budget of the loaded diffusion pipelines, in bytes
            (weights and buffers); beyond it the least recently used one is unloaded, and loaded
            again when next asked for.
    """

    torch_threads: int | None = Field(default=None, ge=1)
    cache_dir: Path = Path("~/.cache/blaze")
    image_pipelines_max_bytes: int = Field(default=8 * 1024**3, ge=0)


Strategy = Literal[
    "round_robin",
    "weighted_round_robin",
    "least_request",
    "power_of_two",
    "latency_ewma",
    "ring_hash",
]


class RetryConfig(_Strict):
    """Retries of a retryable failure on another deployment, inside the request's deadline.

    Attributes:
        num_retries: retries after the first attempt.
        backoff_base_s, backoff_max_s: exponential back-off with full jitter, in seconds.
    """

    num_retries: int = Field(default=2, ge=0, le=10)
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)


class BreakerConfig(_Strict):
    """Circuit breaker of each deployment (see ``resilience/breaker.py``); times in seconds."""

    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=10.0, gt=0)
    half_open_max_requests: int = Field(default=1, ge=1)
    success_threshold: int = Field(default=2, ge=1)
    error_rate_threshold: float | None = Field(default=None, gt=0, le=1)
    window_s: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=10, ge=1)


class HealthCheckConfig(_Strict):
    """Active health checks, in Envoy's terms; times in seconds."""

    enabled: bool = True
    interval_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    unhealthy_threshold: int = Field(default=3, ge=1)
    healthy_threshold: int = Field(default=2, ge=1)


class ModelConfig(_Strict):
    """One served model: the name clients send as ``model`` and the deployments behind it.

    Attributes:
        strategy: load-balancing strategy over the deployments.
        fallbacks: other served models tried, in order, when this one cannot serve.
        session_header: request header whose value is the ``ring_hash`` key (then the
            ``user`` field, then the client IP).
        virtual_nodes: points per unit of weight on the ``ring_hash`` ring.
        ewma_exploration: share of ``latency_ewma`` choices made at random, so a recovered
            deployment is measured again.
    """

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    strategy: Strategy = "least_request"
    fallbacks: list[str] = Field(default_factory=list)
    session_header: str = "X-Session-ID"
    virtual_nodes: int = Field(default=160, ge=1, le=10_000)
    ewma_exploration: float = Field(default=0.05, ge=0, le=1)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig)
    cache: ModelCacheConfig = Field(default_factory=ModelCacheConfig)

    @model_validator(mode="after")
    def _one_kind(self) -> ModelConfig:
        kinds = {isinstance(d, DiffusionDeploymentConfig) for d in self.deployments}
        if len(kinds) > 1:
            raise ValueError("deployments: one model cannot mix image and text engines")
        return self


def _default_models() -> list[ModelConfig]:
    return [
        ModelConfig(
            name="smollm2",
            aliases=["default"],
            deployments=[LLMDeploymentConfig(model=f"{BUILTIN_PREFIX}smollm2-135m-instruct")],
        ),
        ModelConfig(
            name="digits",
            deployments=[
                DiffusionDeploymentConfig(engine="diffusion", model=f"{BUILTIN_PREFIX}digits")
            ],
        ),
    ]


class Settings(BaseSettings):
    """All of Blaze's configuration.

    Sources, highest priority first: ``BLAZE_*`` environment variables (nested keys joined by
    ``__``, e.g. ``BLAZE_SERVER__PORT=9000``; lists as JSON), then the YAML file, then defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix="BLAZE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    models: list[ModelConfig] = Field(default_factory=_default_models, min_length=1)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    usage: UsageConfig = Field(default_factory=UsageConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for model in self.models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen.add(name)
        for model in self.models:
            for fallback in model.fallbacks:
                if fallback not in seen or fallback in (model.name, *model.aliases):
                    raise ValueError(
                        f"model {model.name!r}: fallback {fallback!r} is not another served model"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Environment first, then the values passed in (the YAML file)."""
        return (env_settings, init_settings)
