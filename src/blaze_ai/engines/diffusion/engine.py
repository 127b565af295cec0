"""The local image engine on Hugging Face ``diffusers``.

A request is checked against the pipeline (size, steps, the class its prompt names) and the
per-request caps (``n``, ``n × steps × pixels``) on the event loop, then queued in a
:class:`~.micro_batch.MicroBatcher`: concurrent requests with the same size, steps, guidance and
scheduler run as one batch on the engine's single worker thread, and each caller gets its own
images. A request's images enter batches ``max_running_images_per_request`` at a time, each
group queued behind the requests that arrived while the previous one ran, so a request for many
images takes turns with the others instead of holding the worker; a group's images are encoded
as PNG off the worker, while the next batch runs. Before each batch the worker takes the
pipeline from the process-wide :class:`~.pipeline_cache.PipelineCache`, which loads it again if
it was evicted to make room for another model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from PIL import Image

from blaze_ai.config.deployments import request_share
from blaze_ai.config.schema import DiffusionDeploymentConfig
from blaze_ai.engines.base import EngineLoad, EngineState
from blaze_ai.engines.diffusion.loader import (
    MAX_SIDE,
    SCHEDULERS,
    LoadedPipeline,
    PipelineInfo,
    load_pipeline,
)
from blaze_ai.engines.diffusion.micro_batch import MicroBatcher
from blaze_ai.engines.diffusion.pipeline_cache import PipelineCache
from blaze_ai.engines.diffusion.runner import ImageJob, ProgressLog, encode_pngs, run_batch
from blaze_ai.engines.lifecycle import LOAD_LOCK, EngineLifecycle
from blaze_ai.errors import (
    BlazeError,
    EngineGenerationError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
)
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ImageRequest, ImageResult

logger = logging.getLogger(__name__)

PipelineLoader = Callable[[DiffusionDeploymentConfig], LoadedPipeline]
_SEED_MODULUS = 2**64


class DiffusersEngine:
    """A :class:`~blaze_ai.engines.base.DiffusionEngine` running a diffusers pipeline here.

    Args:
        name: deployment name, used in logs and as the pipeline cache key.
        config: the deployment's settings.
        cache: the process-wide cache of loaded pipelines.
        torch_threads: torch intra-op threads; None keeps torch's default.
        loader: loads the pipeline (blocking); injected by tests.
    """

    def __init__(
        self,
        name: str,
        config: DiffusionDeploymentConfig,
        *,
        cache: PipelineCache,
        torch_threads: int | None = None,
        loader: PipelineLoader = load_pipeline,
    ) -> None:
        self.name = name
        self.progress = ProgressLog(name)
        self._config = config
        self._cache = cache
        self._torch_threads = torch_threads
        self._loader = loader
        self._lifecycle = EngineLifecycle(name)
        self._info: PipelineInfo | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._batcher: MicroBatcher[ImageJob, tuple[Image.Image, ...]] | None = None

    @property
    def state(self) -> EngineState:
        """The engine's current state."""
        return self._lifecycle.state

    @property
    def last_error(self) -> str | None:
        """The latest start failure as ``Type: message``; None if it never failed."""
        return self._lifecycle.last_error

    @property
    def info(self) -> PipelineInfo | None:
        """What the loaded pipeline accepts (None until started)."""
        return self._info

    async def start(self) -> None:
        """Load the pipeline in a thread. Raises EngineDeadError (state FAILED) if it cannot."""
        self._lifecycle.starting()
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        loaded = await self._lifecycle.load(self._pipeline)
        self._info = loaded.info
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"blaze-{self.name}")
        self._batcher = MicroBatcher(
            self._run_batch,
            executor=self._executor,
            max_batch_size=self._config.max_batch_size,
            max_wait_s=self._config.batch_wait_s,
            name=self.name,
        )
        await self._batcher.start()
        self._lifecycle.ready()

    async def stop(self) -> None:
        """Fail queued requests, wait for the running batch, unload; state becomes STOPPED."""
        self._lifecycle.stopped()
        if self._batcher is not None:
            batcher, self._batcher = self._batcher, None
            await batcher.stop()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        self._cache.drop(self.name)

    async def check_health(self) -> None:
        """Raise EngineUnavailableError unless the engine is READY or DEGRADED."""
        self._lifecycle.check_health()

    def load(self) -> EngineLoad:
        """Requests queued or running, how many of them wait for a batch, and the images of
        the running batch (now and at most since start)."""
        if self._batcher is None:
            return EngineLoad(in_flight=0, queue_depth=0)
        batcher = self._batcher
        queued = batcher.queued
        return EngineLoad(
            in_flight=queued + batcher.running,
            queue_depth=queued,
            batch_size=batcher.running_size,
            peak_batch_size=batcher.peak_size,
        )

    async def generate_images(self, req: ImageRequest, deadline: Deadline) -> ImageResult:
        """Generate the images of ``req``; see :class:`~blaze_ai.engines.base.DiffusionEngine`.

        Raises:
            InvalidRequestError: unsupported size (``size``), too many steps (``steps``), an
                unknown scheduler (``scheduler``), a negative prompt the pipeline cannot take
                (``negative_prompt``), a prompt naming none of a class model's classes, more
                images than ``max_images_per_request`` (``n``) or ``n × steps × pixels`` over
                ``max_pixel_steps_per_request`` (``size``).
            EngineTimeoutError: ``deadline`` passed first.
            EngineGenerationError: the pipeline failed.
        """
        info, batcher = self._require_ready()
        job = make_job(req, info, max_steps=self._config.max_steps)
        check_request_caps(job, self._config)
        per_group = request_share(
            self._config.max_batch_size, self._config.max_running_images_per_request
        )
        images: list[bytes] = []
        try:
            async with asyncio.timeout(deadline.remaining_s()):
                for first in range(0, len(job.seeds), per_group):
                    group = dataclasses.replace(job, seeds=job.seeds[first : first + per_group])
                    made = await batcher.submit(group, key=job.batch_key, size=len(group.seeds))
                    # off the worker: the next batch runs while this one is encoded
                    pngs = await asyncio.to_thread(encode_pngs, made, job.width, job.height)
                    images.extend(pngs)
        except TimeoutError:
            raise EngineTimeoutError(f"request timed out on engine {self.name}") from None
        finally:
            job.cancelled.set()  # stops its batch early if it was the last one waiting
        return ImageResult(images=tuple(images), width=job.width, height=job.height)

    def _require_ready(
        self,
    ) -> tuple[PipelineInfo, MicroBatcher[ImageJob, tuple[Image.Image, ...]]]:
        self._lifecycle.require_ready()
        if self._info is None or self._batcher is None:
            raise EngineUnavailableError(f"engine {self.name} is not started")
        return self._info, self._batcher

    def _pipeline(self) -> LoadedPipeline:
        loaded: LoadedPipeline = self._cache.get(
            self.name, self._load_locked, lambda p: p.size_bytes
        )
        return loaded

    def _load_locked(self) -> LoadedPipeline:
        with LOAD_LOCK:  # one model load at a time in the process (see lifecycle.LOAD_LOCK)
            return self._loader(self._config)

    def _run_batch(self, jobs: list[ImageJob]) -> Sequence[tuple[Image.Image, ...]]:
        """Worker thread: one micro-batch, loading the pipeline first if it was evicted."""
        try:
            return run_batch(self._pipeline(), jobs, self.progress)
        except BlazeError:
            raise
        except Exception as exc:
            logger.exception("image_generation_failed", extra={"engine": self.name})
            raise EngineGenerationError(
                f"image generation failed: {type(exc).__name__}: {exc}"
            ) from exc


def make_job(req: ImageRequest, info: PipelineInfo, *, max_steps: int) -> ImageJob:
    """Check ``req`` against the pipeline and fill in its defaults.

    Raises:
        InvalidRequestError: see :meth:`DiffusersEngine.generate_images`.
    """
    width, height = _size(req, info)
    steps = req.steps if req.steps is not None else info.steps
    if steps > max_steps:
        raise InvalidRequestError(f"steps: at most {max_steps} are allowed", param="steps")
    if req.scheduler is not None and req.scheduler not in SCHEDULERS:
        known = ", ".join(SCHEDULERS)
        raise InvalidRequestError(f"scheduler must be one of: {known}", param="scheduler")
    if req.negative_prompt and info.classes is None and not info.negative_prompt:
        raise InvalidRequestError(
            "this model does not take a negative prompt", param="negative_prompt"
        )
    class_id = info.classes.class_of(req.prompt) if info.classes is not None else None
    base = req.seed if req.seed is not None else secrets.randbits(63)
    return ImageJob(
        prompt=req.prompt,
        negative_prompt=req.negative_prompt if info.classes is None else None,
        class_id=class_id,
        seeds=tuple((base + i) % _SEED_MODULUS for i in range(req.n)),
        width=width,
        height=height,
        steps=steps,
        guidance_scale=(
            req.guidance_scale if req.guidance_scale is not None else info.guidance_scale
        ),
        scheduler=req.scheduler or info.scheduler,
        cancelled=threading.Event(),
    )


def check_request_caps(job: ImageJob, config: DiffusionDeploymentConfig) -> None:
    """Refuse a request over the deployment's per-request caps.

    Raises:
        InvalidRequestError: ``n`` over ``max_images_per_request`` (``n``), or
            ``n × steps × width × height`` over ``max_pixel_steps_per_request`` (``size``).
    """
    n = len(job.seeds)
    if n > config.max_images_per_request:
        raise InvalidRequestError(
            f"n: this model generates at most {config.max_images_per_request} images per request",
            param="n",
        )
    work = n * job.steps * job.width * job.height
    if work > config.max_pixel_steps_per_request:
        raise InvalidRequestError(
            f"n × steps × width × height is {n} × {job.steps} × {job.width} × {job.height} = "
            f"{work}; this model allows at most {config.max_pixel_steps_per_request} per "
            "request: lower n, steps or size",
            param="size",
        )


def _size(req: ImageRequest, info: PipelineInfo) -> tuple[int, int]:
    if req.width is None or req.height is None:
        return info.default_size
    m = info.size_multiple
    if all(m <= side <= MAX_SIDE and side % m == 0 for side in (req.width, req.height)):
        return req.width, req.height
    raise InvalidRequestError(
        f"size {req.width}x{req.height} is not supported by this model: width and height must "
        f"be multiples of {m} between {m} and {MAX_SIDE}",
        param="size",
    )
