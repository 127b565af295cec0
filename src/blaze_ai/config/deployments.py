"""Deployment settings: one per engine kind (``llm``, ``remote``, ``diffusion``)."""

from __future__ import annotations

import logging
import warnings
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from blaze_ai.config.base import StrictModel as _Strict

logger = logging.getLogger(__name__)

PREFIX_CACHE_MAX_BYTES = 256 * 2**20
"""Default memory of an LLM deployment's prefix cache: 256 MiB."""
MAX_REQUEST_TOKENS = 65536
"""Default cap of ``n × max_tokens`` of one request to a local LLM, in tokens."""
MAX_OUTPUT_TOKENS = 131072
"""Default cap of ``max_tokens`` sent to a remote upstream, in tokens (128 Ki)."""
MAX_REQUEST_PIXEL_STEPS = 10 * 50 * 1024 * 1024
"""Default cap of ``n × steps × width × height`` of one image request: ten 1024x1024 images of
50 steps."""


class _DeploymentCommon(_Strict):
    """Routing settings every deployment has.

    Attributes:
        weight: share of traffic for weighted strategies (relative to the other deployments).
        max_concurrency: most requests in flight on this deployment; None is unbounded.
        timeout_s: deadline of one attempt on this deployment, in seconds (None: the request's).
        replicas: independent copies of this deployment (local engines: copies of the model in
            this process; remote: separate routing slots, each with its own breaker).
    """

    weight: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    replicas: int = Field(default=1, ge=1, le=64)


class LLMDeploymentConfig(_DeploymentCommon):
    """A local LLM engine on Hugging Face ``transformers``.

    Attributes:
        model: a local folder, a hub id (when the machine is online), or ``builtin:NAME``.
        gguf_file: a GGUF file name inside ``model`` (dequantized on load).
        device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bfloat16 or float16 on CUDA, float32 on CPU) or an explicit dtype.
        max_context_tokens: context window; None reads it from the model config.
        trust_remote_code: passed to ``from_pretrained``; off by default.
        max_batch_size: most sequences decoded together (continuous batching; a request has
            ``n`` sequences).
        max_sequences_per_request: most sequences of one request decoded at once; its other
            choices start as these finish, after the requests that arrived meanwhile. None:
            half of ``max_batch_size`` (at least 1).
        max_prompt_tokens: longest prompt accepted, in tokens; longer gets 400 (``messages``
            or ``prompt``). None: the context window.
        max_completion_tokens_per_request: most tokens one request may ask to generate, over
            all its choices (``n × max_tokens``, times the prompts of a ``/v1/completions``
            list), in tokens; beyond it 400 (``max_tokens``). A
            request without ``max_tokens`` gets at most this divided by ``n`` per choice.
        max_queue: most requests waiting beyond the batch's free places; more get 429 with
            ``Retry-After``.
        max_prefill_tokens: most prompt tokens (not counting those found in the prefix cache)
            prefilled together in one forward pass between two decoding steps; a larger prompt
            goes alone. None: 128 on CPU (about 0.15-0.4 s of one core, the longest running
            streams then wait between two tokens), 4096 on CUDA.
        prefix_cache_max_bytes: memory for the keys and values of recent prompts, reused by
            later prompts that start the same way (system prompt, earlier turns), in bytes;
            0 disables. The old key ``prefix_cache_mb`` (in MiB) is still accepted, with a
            deprecation warning, for one release.
        quantization: ``none``; ``int8``, dynamic int8 quantization of the Linear layers on CPU
            (``torch.ao``); ``bnb-8bit`` / ``bnb-4bit`` through bitsandbytes, CUDA only.
        compile: run the model through ``torch.compile`` (slow first requests).
    """

    engine: Literal["llm"] = "llm"
    model: str
    gguf_file: str | None = None
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_context_tokens: int | None = Field(default=None, ge=16)
    trust_remote_code: bool = False
    max_batch_size: int = Field(default=16, ge=1, le=1024)
    max_sequences_per_request: int | None = Field(default=None, ge=1)
    max_prompt_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens_per_request: int = Field(default=MAX_REQUEST_TOKENS, ge=1)
    max_queue: int = Field(default=64, ge=0)
    max_prefill_tokens: int | None = Field(default=None, ge=1)
    prefix_cache_max_bytes: int = Field(default=PREFIX_CACHE_MAX_BYTES, ge=0)
    quantization: Literal["none", "int8", "bnb-8bit", "bnb-4bit"] = "none"
    compile: bool = False

    @model_validator(mode="before")
    @classmethod
    def _rename_prefix_cache_mb(cls, data: Any) -> Any:
        """Accept ``prefix_cache_mb: N`` (MiB) as ``prefix_cache_max_bytes: N * 2**20``."""
        if not isinstance(data, dict) or "prefix_cache_mb" not in data:
            return data
        if "prefix_cache_max_bytes" in data:
            raise ValueError(
                "prefix_cache_mb and prefix_cache_max_bytes are both set; keep only "
                "prefix_cache_max_bytes (in bytes)"
            )
        data = dict(data)
        data["prefix_cache_max_bytes"] = _mib_to_bytes(data.pop("prefix_cache_mb"))
        message = (
            "prefix_cache_mb is deprecated and will be removed in the next release; "
            f"use prefix_cache_max_bytes: {data['prefix_cache_max_bytes']} (bytes) instead"
        )
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        logger.warning(  # also seen before logging is configured: the message says it all
            "config_key_deprecated: %s",
            message,
            extra={"key": "prefix_cache_mb", "replacement": "prefix_cache_max_bytes"},
        )
        return data

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return _check_device_name(value)

    @model_validator(mode="after")
    def _check_sequences(self) -> LLMDeploymentConfig:
        _check_share("max_sequences_per_request", self.max_sequences_per_request, self)
        return self


class RemoteDeploymentConfig(_DeploymentCommon):
    """Any OpenAI-compatible upstream: vLLM, TGI, Ollama, llama.cpp server, OpenAI itself.

    Attributes:
        base_url: the upstream's API root, e.g. ``http://10.0.0.5:8000/v1``.
        model: the model name to send upstream.
        api_key_env: name of an environment variable holding the upstream's API key.
        max_connections: size of the pooled connection set to this upstream.
        health_path: path under ``base_url`` probed by active health checks.
        max_output_tokens: most ``max_tokens`` (per choice) a request may ask of this upstream,
            in tokens; beyond it 400 (``max_tokens``) before anything is sent.
    """

    engine: Literal["remote"]
    base_url: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    max_connections: int = Field(default=256, ge=1)
    health_path: str = "/models"
    max_output_tokens: int = Field(default=MAX_OUTPUT_TOKENS, ge=1)


def _mib_to_bytes(value: object) -> int:
    """``value`` MiB (an integer, or its digits as from an environment variable) in bytes.

    Raises:
        ValueError: ``value`` is not a whole number.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 2**20
    if isinstance(value, str):
        try:
            return int(value) * 2**20
        except ValueError:
            pass
    raise ValueError("prefix_cache_mb must be a whole number of MiB")


def request_share(max_batch_size: int, per_request: int | None) -> int:
    """Places of a batch one request may hold at once: ``per_request``, else half the batch
    (at least 1)."""
    return per_request or max(1, max_batch_size // 2)


def _check_share(key: str, per_request: int | None, config: Any) -> None:
    """Raise ValueError when one request's share ``per_request`` exceeds the batch."""
    if per_request is not None and per_request > config.max_batch_size:
        raise ValueError(
            f"{key} ({per_request}) cannot exceed max_batch_size ({config.max_batch_size})"
        )


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
        max_running_images_per_request: most images of one request in a micro-batch; its
            other images run in later batches, after the requests that arrived meanwhile.
            None: half of ``max_batch_size`` (at least 1).
        max_images_per_request: most images one request may ask for (``n``); more gets 400.
        max_pixel_steps_per_request: most ``n × steps × width × height`` of one request;
            beyond it 400 (``size``). The default allows ten 1024x1024 images of 50 steps.
        batch_wait_s: how long the first request of a batch waits for others, in seconds.
    """

    engine: Literal["diffusion"]
    model: str
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    scheduler: SchedulerName | None = None
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    max_steps: int = Field(default=150, ge=1, le=1000)
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: Literal["none", "model", "sequential"] = "none"
    max_batch_size: int = Field(default=8, ge=1, le=256)
    max_running_images_per_request: int | None = Field(default=None, ge=1)
    max_images_per_request: int = Field(default=10, ge=1)
    max_pixel_steps_per_request: int = Field(default=MAX_REQUEST_PIXEL_STEPS, ge=1)
    batch_wait_s: float = Field(default=0.01, ge=0.0, le=10.0)

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        return _check_device_name(value)

    @model_validator(mode="after")
    def _check_running_images(self) -> DiffusionDeploymentConfig:
        _check_share("max_running_images_per_request", self.max_running_images_per_request, self)
        return self

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
