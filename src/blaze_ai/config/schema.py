"""The configuration schema.

Every model forbids unknown keys (``extra="forbid"``) so that a typo fails at start-up with a
message naming the key, instead of being silently ignored. With no file, :class:`Settings`
describes the embedded default: SmolLM2-135M-Instruct served as ``smollm2`` (alias ``default``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
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
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(default=600.0, gt=0)
    max_pending_requests: int = Field(default=256, ge=1)
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class RuntimeConfig(_Strict):
    """Process-wide settings of the local engines.

    Attributes:
        torch_threads: threads torch uses for one operation; None keeps torch's default
            (one per core). On a machine shared with other work, fewer is often faster.
        cache_dir: where converted model copies are kept (GGUF dequantized once to safetensors).
    """

    torch_threads: int | None = Field(default=None, ge=1)
    cache_dir: Path = Path("~/.cache/blaze")


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
        max_batch_size: most sequences decoded together (continuous batching; a request has
            ``n`` sequences).
        max_queue: most requests waiting beyond the batch's free places; more get 429 with
            ``Retry-After``.
        quantization: ``none``; ``int8``, dynamic int8 quantization of the Linear layers on CPU
            (``torch.ao``); ``bnb-8bit`` / ``bnb-4bit`` through bitsandbytes, CUDA only.
        compile: run the model through ``torch.compile`` (slow first requests).
    """

    engine: Literal["llm"] = "llm"
    model: str
    gguf_file: str | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    replicas: int = Field(default=1, ge=1, le=64)
    max_context_tokens: int | None = Field(default=None, ge=16)
    trust_remote_code: bool = False
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_queue: int = Field(default=64, ge=0)
    quantization: Literal["none", "int8", "bnb-8bit", "bnb-4bit"] = "none"
    compile: bool = False

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda", "mps") or value.startswith("cuda:"):
            return value
        raise ValueError("device must be auto, cpu, cuda, cuda:N or mps")


DeploymentConfig = LLMDeploymentConfig


class ModelConfig(_Strict):
    """One served model: the name clients send as ``model`` and the deployments behind it."""

    name: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    deployments: list[DeploymentConfig] = Field(min_length=1)


def _default_models() -> list[ModelConfig]:
    return [
        ModelConfig(
            name="smollm2",
            aliases=["default"],
            deployments=[LLMDeploymentConfig(model=f"{BUILTIN_PREFIX}smollm2-135m-instruct")],
        )
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
