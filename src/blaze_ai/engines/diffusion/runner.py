"""Run one micro-batch of image jobs on a loaded pipeline (worker thread side), and encode a
job's images (:func:`encode_pngs`, any thread: the worker does not wait for it).

Every image has its own CPU ``torch.Generator`` seeded with its own seed, so an image depends on
its seed and parameters, not on the other requests of its batch (up to floating-point
differences between batch sizes). Text-conditioned pipelines are called once for the whole
batch with one prompt per image; class-conditional ones go through
:func:`.class_conditional.sample`, and their small native images are enlarged
to the requested size with nearest-neighbour sampling (the pixels stay sharp squares).
"""

from __future__ import annotations

import inspect
import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from blaze_ai.engines.diffusion import class_conditional
from blaze_ai.engines.diffusion.loader import LoadedPipeline, make_scheduler
from blaze_ai.resilience.clock import Clock, MonotonicClock

logger = logging.getLogger(__name__)

BatchKey = tuple[int, int, int, float, str | None]
"""What images of one batch share: width, height, steps, guidance scale, scheduler."""


@dataclass(frozen=True, slots=True)
class ImageJob:
    """One request's images, as the worker thread runs them.

    Attributes:
        prompt: the text prompt (text-conditioned pipelines).
        negative_prompt: what to steer away from, or None.
        class_id: the class to draw (class-conditional pipelines), else None.
        seeds: one seed per image.
        width, height: output size in pixels.
        steps, guidance_scale, scheduler: sampling parameters (scheduler None: the pipeline's).
        cancelled: set when the caller went away; a batch whose jobs are all cancelled stops.
    """

    prompt: str
    negative_prompt: str | None
    class_id: int | None
    seeds: tuple[int, ...]
    width: int
    height: int
    steps: int
    guidance_scale: float
    scheduler: str | None
    cancelled: threading.Event

    @property
    def batch_key(self) -> BatchKey:
        """Jobs with equal keys can run in one batch."""
        return (self.width, self.height, self.steps, self.guidance_scale, self.scheduler)


class ProgressLog:
    """Logs "step i of N" of the running batch: every step at debug, at info every
    ``interval_s`` seconds (so long jobs are visible) and at the end of a batch that was.

    Args:
        deployment: the engine's name, logged with each line.
        interval_s: seconds between info lines.
        clock: monotonic time source.
    """

    def __init__(
        self, deployment: str, *, interval_s: float = 5.0, clock: Clock | None = None
    ) -> None:
        self._deployment = deployment
        self._interval_s = interval_s
        self._clock = clock or MonotonicClock()
        self._images = 0
        self._last_info = 0.0
        self._logged_info = False
        self.step = 0
        self.steps = 0

    def begin(self, images: int, steps: int) -> None:
        """A batch of ``images`` images and ``steps`` steps starts."""
        self._images, self.step, self.steps = images, 0, steps
        self._last_info = self._clock.now()
        self._logged_info = False

    def __call__(self, step: int, steps: int) -> None:
        """Step ``step`` (1-based) of ``steps`` is done."""
        self.step, self.steps = step, steps
        now = self._clock.now()
        due = now - self._last_info >= self._interval_s or (step == steps and self._logged_info)
        level = logging.INFO if due else logging.DEBUG
        if due:
            self._last_info, self._logged_info = now, True
        logger.log(
            level,
            "image_generation_progress",
            extra={
                "deployment": self._deployment,
                "step": step,
                "steps": steps,
                "images": self._images,
            },
        )


def run_batch(
    loaded: LoadedPipeline, jobs: Sequence[ImageJob], progress: ProgressLog
) -> list[tuple[Image.Image, ...]]:
    """Generate every job's images in one pipeline call (blocking).

    Returns:
        Per job, its images in seed order: at the requested size, or at a class-conditional
        model's native size (:func:`encode_pngs` enlarges them).
    """
    first = jobs[0]
    generators = [torch.Generator("cpu").manual_seed(s) for job in jobs for s in job.seeds]
    progress.begin(len(generators), first.steps)
    scheduler = make_scheduler(loaded, first.scheduler)
    classes = loaded.info.classes
    if classes is not None:
        images = _class_images(loaded, classes, jobs, scheduler, generators, progress)
    else:
        images = _text_images(loaded, jobs, scheduler, generators, progress)
    out: list[tuple[Image.Image, ...]] = []
    for job in jobs:
        out.append(tuple(images[: len(job.seeds)]))
        images = images[len(job.seeds) :]
    return out


def encode_pngs(images: Sequence[Image.Image], width: int, height: int) -> tuple[bytes, ...]:
    """``images`` as PNG files of ``width`` x ``height`` pixels (smaller ones enlarged with
    nearest-neighbour sampling, so the pixels stay sharp squares). Blocking: run it in a thread;
    Pillow releases the GIL while it encodes."""
    return tuple(
        _png(
            image
            if image.size == (width, height)
            else image.resize((width, height), Image.Resampling.NEAREST)
        )
        for image in images
    )


def _class_images(
    loaded: LoadedPipeline,
    classes: class_conditional.ClassLabels,
    jobs: Sequence[ImageJob],
    scheduler: Any,
    generators: list[torch.Generator],
    progress: ProgressLog,
) -> list[Image.Image]:
    first = jobs[0]

    def on_step(step: int, steps: int) -> bool:
        progress(step, steps)
        return not all(job.cancelled.is_set() for job in jobs)

    samples = class_conditional.sample(
        loaded.pipe.unet,
        scheduler,
        [job.class_id or 0 for job in jobs for _ in job.seeds],
        null_class=classes.null_class,
        guidance_scale=first.guidance_scale,
        steps=first.steps,
        generators=generators,
        eta=loaded.info.eta,
        on_step=on_step,
    )
    pixels = ((samples + 1.0) * 127.5).round().to(torch.uint8)  # [B, C, h, w]
    return [_to_image(sample) for sample in pixels]


def _text_images(
    loaded: LoadedPipeline,
    jobs: Sequence[ImageJob],
    scheduler: Any,
    generators: list[torch.Generator],
    progress: ProgressLog,
) -> list[Image.Image]:
    pipe, first = loaded.pipe, jobs[0]
    pipe.scheduler = scheduler
    accepted = inspect.signature(pipe.__call__).parameters
    kwargs: dict[str, Any] = {
        "prompt": [job.prompt for job in jobs for _ in job.seeds],
        "width": first.width,
        "height": first.height,
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance_scale,
        "generator": generators,
        "output_type": "pil",
    }
    if any(job.negative_prompt for job in jobs):
        kwargs["negative_prompt"] = [job.negative_prompt or "" for job in jobs for _ in job.seeds]
    if "callback_on_step_end" in accepted:

        def on_step_end(p: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            progress(index + 1, first.steps)
            if all(job.cancelled.is_set() for job in jobs):
                p._interrupt = True  # diffusers' documented way to stop a pipeline early
            return tensors

        kwargs["callback_on_step_end"] = on_step_end
    return list(pipe(**kwargs).images)


def _to_image(sample: torch.Tensor) -> Image.Image:
    """``[C, h, w]`` uint8 -> an RGB image."""
    array = sample.permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0]).convert("RGB")
    return Image.fromarray(array).convert("RGB")


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
