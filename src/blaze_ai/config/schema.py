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


class LLMDeploymentConfig(_Strict):
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


def _check_device_name(value: str) -> str:
    if value in ("auto", "cpu", "cuda", "mps") or value.startswith("cuda:"):
        return value
    raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")


SchedulerName = Literal["ddim", "ddpm", "pndm", "euler", "euler_ancestral", "dpm_solver", "unipc"]
"""Diffusers schedulers a diffusion deployment or request may choose, by short name."""


class DiffusionDeploymentConfig(_Strict):
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
    | Annotated[DiffusionDeploymentConfig, Tag("diffusion")],
    Discriminator(
        _engine_of,
        custom_error_type="invalid_engine",
        custom_error_message="engine must be llm or diffusion",
    ),
]
"""One deployment, chosen by its ``engine`` key."""


class ModelConfig(_Strict):
    """One served model: the name clients send as ``model`` and the deployments behind it."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    deployments: list[DeploymentConfig] = Field(min_length=1)

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

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for model in self.models:
            for name in (model.name, *model.aliases):
                if name in seen:
                    raise ValueError(f"model name or alias {name!r} is used twice")
                seen.add(name)
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
