"""Load a diffusers pipeline for a diffusion deployment, with its memory options applied.

Sources (the ``model`` setting): a local pipeline folder, a hub id when the machine is online
(both through ``DiffusionPipeline.from_pretrained``, which picks the pipeline class from
``model_index.json``), or ``builtin:digits`` (a folder shipped inside Blaze).

Two kinds of pipelines are served:

- **text-conditioned** ones (Stable Diffusion 1.5, SDXL, SD-Turbo...), called with the prompt;
- **class-conditional** ones: a ``UNet2DModel`` with class embeddings whose folder also holds
  ``blaze_classes.json`` (the class names); they are sampled by
  :mod:`.class_conditional`, since diffusers' DDPM/DDIM pipelines take no labels.

Memory options go through diffusers' own API: ``pipe.enable_attention_slicing()``,
``pipe.vae.enable_slicing()`` / ``enable_tiling()`` (diffusers 0.42 dropped the pipeline-level
VAE methods from ``StableDiffusionPipeline``), ``enable_model_cpu_offload()`` /
``enable_sequential_cpu_offload()``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from blaze_ai.config.schema import BUILTIN_PREFIX, DiffusionDeploymentConfig
from blaze_ai.engines.builtin import builtin_pipeline_dir
from blaze_ai.engines.devices import pick_device, pick_dtype
from blaze_ai.engines.diffusion.class_conditional import CLASSES_FILE, ClassLabels
from blaze_ai.errors import ConfigError

logger = logging.getLogger(__name__)

SCHEDULERS: dict[str, Any] = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "pndm": PNDMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_ancestral": EulerAncestralDiscreteScheduler,
    "dpm_solver": DPMSolverMultistepScheduler,
    "unipc": UniPCMultistepScheduler,
}
"""Scheduler short names (config ``scheduler``, request ``scheduler``) -> diffusers classes."""

MAX_SIDE = 2048
"""Largest width or height served, in pixels."""


@dataclass(frozen=True, slots=True)
class PipelineInfo:
    """What a loaded pipeline accepts and its defaults; requests are checked against it.

    Attributes:
        classes: the class names of a class-conditional pipeline; None for a text one.
        default_size: ``(width, height)`` in pixels when a request gives no size.
        size_multiple: width and height must be multiples of it (pixels).
        steps: default denoising steps.
        guidance_scale: default guidance weight.
        eta: DDIM stochasticity used when the scheduler takes it.
        scheduler: default scheduler name, or None for the pipeline's own.
        negative_prompt: whether the pipeline takes a negative prompt.
    """

    classes: ClassLabels | None
    default_size: tuple[int, int]
    size_multiple: int
    steps: int
    guidance_scale: float
    eta: float
    scheduler: str | None
    negative_prompt: bool


@dataclass(frozen=True, slots=True)
class LoadedPipeline:
    """A pipeline ready to run, and what requests are validated against.

    Attributes:
        pipe: the diffusers pipeline, on its device (or offloaded).
        info: what requests are validated against.
        scheduler: the pipeline's own scheduler, used when no scheduler is chosen.
        size_bytes: weights and buffers, for the pipeline cache's budget.
    """

    pipe: Any
    info: PipelineInfo
    scheduler: Any
    size_bytes: int


def pick_diffusion_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> float16 on CUDA, float32 elsewhere; see :func:`pick_dtype` for the rest."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return pick_dtype(name, device)


def resolve_pipeline_source(model: str) -> str:
    """The folder or hub id to give ``from_pretrained`` (``builtin:NAME`` -> its folder)."""
    if model.startswith(BUILTIN_PREFIX):
        return str(builtin_pipeline_dir(model[len(BUILTIN_PREFIX) :]))
    return model


def load_pipeline(config: DiffusionDeploymentConfig) -> LoadedPipeline:
    """Load the pipeline of ``config`` (blocking: run it in a worker thread).

    Raises:
        ConfigError: the device or dtype is impossible here, a memory option does not apply to
            this pipeline, or the pipeline is neither text- nor class-conditional.
        OSError: the folder or hub id cannot be read (diffusers' own error).
    """
    device = pick_device(config.device)
    dtype = pick_diffusion_dtype(config.dtype, device)
    source = resolve_pipeline_source(config.model)
    pipe: Any = DiffusionPipeline.from_pretrained(source, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    info = _pipeline_info(pipe, source, config)
    _apply_memory_options(pipe, config, device)
    return LoadedPipeline(
        pipe=pipe, info=info, scheduler=pipe.scheduler, size_bytes=pipeline_bytes(pipe)
    )


def make_scheduler(loaded: LoadedPipeline, name: str | None) -> Any:
    """A scheduler of kind ``name`` with the pipeline's noise schedule (its own when None)."""
    if name is None:
        return loaded.scheduler
    return SCHEDULERS[name].from_config(loaded.scheduler.config)


def pipeline_bytes(pipe: Any) -> int:
    """Bytes of every parameter and buffer of the pipeline's torch modules."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            for tensor in (*component.parameters(), *component.buffers()):
                total += tensor.numel() * tensor.element_size()
    return total


def _pipeline_info(pipe: Any, source: str, config: DiffusionDeploymentConfig) -> PipelineInfo:
    folder = Path(source)
    if (folder / CLASSES_FILE).is_file():
        return _class_info(pipe, ClassLabels.read(folder), config)
    if getattr(pipe, "text_encoder", None) is not None or getattr(pipe, "tokenizer", None):
        return _text_info(pipe, config)
    raise ConfigError(
        f"pipeline {source} is neither text-conditioned (no text encoder) nor class-conditional "
        f"(no {CLASSES_FILE}); Blaze cannot serve it"
    )


def _class_info(pipe: Any, classes: ClassLabels, config: DiffusionDeploymentConfig) -> PipelineInfo:
    unet = pipe.unet
    if unet.config.num_class_embeds is None:
        raise ConfigError(f"{CLASSES_FILE} is present but the UNet has no class embeddings")
    native = int(unet.config.sample_size)
    defaults = classes.defaults
    side = int(defaults.get("size", native))
    return PipelineInfo(
        classes=classes,
        default_size=(side, side),
        size_multiple=native,
        steps=config.steps or int(defaults.get("steps", 25)),
        guidance_scale=_first(config.guidance_scale, defaults.get("guidance_scale"), 1.0),
        eta=float(defaults.get("eta", 0.0)),
        scheduler=config.scheduler or defaults.get("scheduler"),
        negative_prompt=False,
    )


def _text_info(pipe: Any, config: DiffusionDeploymentConfig) -> PipelineInfo:
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    vae_scale = int(getattr(pipe, "vae_scale_factor", 8))
    sample = getattr(getattr(denoiser, "config", None), "sample_size", 64)
    sample = sample[0] if isinstance(sample, list | tuple) else sample
    patch = int(getattr(getattr(denoiser, "config", None), "patch_size", None) or 1)
    side = int(getattr(pipe, "default_sample_size", sample)) * vae_scale
    params = inspect.signature(pipe.__call__).parameters
    return PipelineInfo(
        classes=None,
        default_size=(side, side),
        size_multiple=max(8, vae_scale * patch),
        steps=config.steps or _default(params, "num_inference_steps", 50),
        guidance_scale=_first(config.guidance_scale, _default(params, "guidance_scale", 7.5), 7.5),
        eta=0.0,
        scheduler=config.scheduler,
        negative_prompt="negative_prompt" in params,
    )


def _apply_memory_options(pipe: Any, config: DiffusionDeploymentConfig, device: Any) -> None:
    if config.attention_slicing:
        pipe.enable_attention_slicing()
    if config.vae_slicing or config.vae_tiling:
        vae = getattr(pipe, "vae", None)
        if vae is None:
            option = "vae_slicing" if config.vae_slicing else "vae_tiling"
            raise ConfigError(f"{option}: this pipeline has no VAE")
        if config.vae_slicing:
            vae.enable_slicing()
        if config.vae_tiling:
            vae.enable_tiling()
    if config.cpu_offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif config.cpu_offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def _default(params: Any, name: str, fallback: Any) -> Any:
    param = params.get(name)
    if param is None or param.default in (inspect.Parameter.empty, None):
        return fallback
    return param.default


def _first(*values: Any) -> float:
    return float(next(v for v in values if v is not None))
