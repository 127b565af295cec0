"""The configuration schema.

Every model forbids unknown keys (``extra="forbid"``) so that a typo fails at start-up with a
message naming the key, instead of being silently ignored. With no file, :class:`Settings`
describes the embedded defaults: SmolLM2-135M-Instruct served as ``smollm2`` (alias ``default``)
and the digits diffusion model served as ``digits``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

BUILTIN_PREFIX = "builtin:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class _DeploymentCommon(_Strict):
    """Routing settings every deployment has.

    Attributes:
        weight: share of traffic for weighted strategies (relative to the other deployments).
        max_concurrency: most requests in flight on this deployment; None is unbounded.
        timeout_s: deadline of one attempt on this deployment, in seconds (None: the request's).
    """

    weight: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)


class LLMDeploymentConfig(_DeploymentCommon):
    """A local LLM engine on Hugging Face ``transformers``.

    Attributes:
        model: a local folder, a hub id (when the machine is online), or ``builtin:NAME``.
        gguf_file: a GGUF file name inside ``model`` (dequantized on load).
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 or float16 on CUDA, float32 on CPU) or an explicit dtype.
        replicas: independent copies of the engine in this process.
        max_context_tokens: context window; None reads it from the model config.
        trust_remote_code: passed to ``from_pretrained``; off by default.
    """

    engine: Literal["llm"] = "llm"
    model: str
    gguf_file: str | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    replicas: int = Field(default=1, ge=1, le=64)
    max_context_tokens: int | None = Field(default=None, ge=16)
    trust_remote_code: bool = False

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return _check_device_name(value)


class RemoteDeploymentConfig(_DeploymentCommon):
    """Any OpenAI-compatible upstream: vLLM, TGI, Ollama, llama.cpp server, OpenAI itself.

    Attributes:
        base_url: the upstream's API root, e.g. ``http://10.0.0.5:8000/v1``.
        model: the model name to send upstream.
        api_key_env: name of an environment variable holding the upstream's API key.
        max_connections: size of the pooled connection set to this upstream.
        health_path: path under ``base_url`` probed by active health checks.
    """

    engine: Literal["remote"]
    base_url: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    max_connections: int = Field(default=256, ge=1)
    health_path: str = "/models"


def _check_device_name(value: str) -> str:
    if value in ("auto", "cpu", "cuda", "mps") or value.startswith("cuda:"):
        return value
    raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")


SchedulerName = Literal["ddim", "ddpm", "pndm", "euler", "euler_ancestral", "dpm_solver", "unipc"]
"""Diffusers schedulers a diffusion deployment or request may choose, by short name."""


class DiffusionDeploymentConfig(_DeploymentCommon):
    """A local image engine on Hugging Face ``diffusers``.

    Attributes:
        model: a local pipeline folder, a hub id (when online), or ``builtin:digits``.
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (float16 on CUDA, float32 on CPU) or an explicit dtype.
        replicas: independent copies of the engine in this process.
        scheduler: the default scheduler; None keeps the pipeline's own.
        steps: default denoising steps; None uses the model's default.
        guidance_scale: default guidance weight; None uses the model's default.
        max_steps: most steps a request may ask for.
        attention_slicing: ``pipe.enable_attention_slicing()`` (less memory, a little slower).
        vae_slicing: ``pipe.vae.enable_slicing()``: decode a batch one image at a time.
        vae_tiling: ``pipe.vae.enable_tiling()``: decode large images tile by tile.
        cpu_offload: ``model`` (``enable_model_cpu_offload``) or ``sequential``
            (``enable_sequential_cpu_offload``) keep weights in CPU memory and move them to the
            accelerator when used; needs an accelerator, which is checked when the config loads.
        max_batch_size: most images generated together in one micro-batch.
        batch_wait_s: how long the first request of a batch waits for others, in seconds.
    """

    engine: Literal["diffusion"]
    model: str
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    replicas: int = Field(default=1, ge=1, le=64)
    scheduler: SchedulerName | None = None
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    max_steps: int = Field(default=150, ge=1, le=1000)
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: Literal["none", "model", "sequential"] = "none"
    max_batch_size: int = Field(default=8, ge=1, le=256)
    batch_wait_s: float = Field(default=0.01, ge=0.0, le=10.0)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return _check_device_name(value)

    @model_validator(mode="after")
    def _check_offload(self) -> DiffusionDeploymentConfig:
        if self.cpu_offload == "none":
            return self
        if self.device == "cpu" or not _accelerator_available():
            where = "device is cpu" if self.device == "cpu" else "this machine has none"
            raise ValueError(
                f"cpu_offload: {self.cpu_offload!r} moves weights between CPU memory and an "
                f"accelerator (CUDA), but {where}; remove cpu_offload or run on a GPU"
            )
        return self


def _accelerator_available() -> bool:
    """True when torch sees an accelerator (imports torch, only for configs that ask)."""
    import torch

    return bool(torch.cuda.is_available())


def _engine_of(value: object) -> str:
    """The ``engine`` key of a deployment (``llm`` when absent, as before engines were several)."""
    if isinstance(value, dict):
        return str(value.get("engine", "llm"))
    return str(getattr(value, "engine", "llm"))


DeploymentConfig = Annotated[
    Annotated[LLMDeploymentConfig, Tag("llm")]
    | Annotated[RemoteDeploymentConfig, Tag("remote")]
    | Annotated[DiffusionDeploymentConfig, Tag("diffusion")],
    Discriminator(
        _engine_of,
        custom_error_type="invalid_engine",
        custom_error_message="engine must be llm, remote or diffusion",
    ),
]
"""One deployment, chosen by its ``engine`` key (``llm`` when absent)."""

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


class ModelCacheConfig(_Strict):
    """How the response cache treats one served model.

    Attributes:
        policy: ``deterministic`` caches requests with ``temperature`` 0 or a fixed ``seed``;
            ``all`` caches every request (sampled answers are then replayed); ``off`` never.
        shared: every tenant shares this model's entries (only for answers that are not
            private to a tenant, such as a public evaluation set).
        ttl_s: lifetime of an entry, in seconds; None: ``cache.ttl_s``.
        version: part of every key; change it to retire the model's entries (a change of the
            deployments' model, file or dtype already does that).
    """

    policy: Literal["deterministic", "all", "off"] = "deterministic"
    shared: bool = False
    ttl_s: float | None = Field(default=None, gt=0)
    version: str | None = None


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


class MemoryCacheConfig(_Strict):
    """Level 1 of the response cache: an LRU in this process, bounded by bytes.

    Attributes:
        max_bytes: most bytes of entries held (each entry's size is estimated).
    """

    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)


class DiskCacheConfig(_Strict):
    """Level 2: ``diskcache`` in a folder, bounded by size; it survives restarts.

    Attributes:
        directory: the folder (created if missing); processes may share one (diskcache is
            process-safe), sharing entries when their namespaces match.
        max_bytes: most bytes on disk before the least recently used entries are culled.
    """

    directory: Path = Path("~/.cache/blaze/responses")
    max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)


class RedisCacheConfig(_Strict):
    """Level 3: Redis, shared by every Blaze process that points at it.

    Attributes:
        url: ``redis://[user:password@]host:port/db`` (or ``rediss://`` for TLS).
        key_prefix: every key starts with it (no glob characters ``*?[]\\``).
        timeout_s: bound on one Redis call, in seconds; a slower call counts as a failure.
        retry_interval_s: after a failure Redis is skipped for this long, then tried again.
    """

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="blaze:cache:", pattern=r"^[^*?\[\]\\]*$")
    timeout_s: float = Field(default=0.25, gt=0, le=30)
    retry_interval_s: float = Field(default=2.0, gt=0)


class CacheConfig(_Strict):
    """The response cache: read-through memory -> disk -> Redis; every level optional.

    Attributes:
        namespace: the tenant namespace of requests that carry no tenant (until auth exists,
            every request); processes sharing a disk folder or Redis share entries only when
            their namespaces are equal.
        ttl_s: default lifetime of an entry, in seconds.
        memory: level 1 (on by default); null turns it off.
        disk: level 2 (off by default).
        redis: level 3 (off by default).
    """

    namespace: str = Field(default="default", min_length=1)
    ttl_s: float = Field(default=3600.0, gt=0)
    memory: MemoryCacheConfig | None = Field(default_factory=MemoryCacheConfig)
    disk: DiskCacheConfig | None = None
    redis: RedisCacheConfig | None = None


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
