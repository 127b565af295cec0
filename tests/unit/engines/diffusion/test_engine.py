"""The diffusers engine on a tiny random Stable Diffusion pipeline loaded through
``DiffusionPipeline.from_pretrained`` (the engine's real loading code)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
from diffusers.models.attention_processor import SlicedAttnProcessor
from PIL import Image

from blaze_ai.config.schema import DiffusionDeploymentConfig, SchedulerName
from blaze_ai.engines.base import DiffusionEngine, EngineState, LLMEngine
from blaze_ai.engines.diffusion.engine import DiffusersEngine
from blaze_ai.engines.diffusion.loader import SCHEDULERS, load_pipeline
from blaze_ai.engines.diffusion.pipeline_cache import PipelineCache
from blaze_ai.errors import EngineDeadError, EngineTimeoutError, InvalidRequestError
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ImageRequest
from tests.fakes import FakeClock

MEMORY_OPTIONS = ["attention_slicing", "vae_slicing", "vae_tiling"]


def config(model: Path | str, **options: Any) -> DiffusionDeploymentConfig:
    return DiffusionDeploymentConfig(engine="diffusion", model=str(model), **options)


def request(prompt: str = "a red cube", **fields: Any) -> ImageRequest:
    defaults: dict[str, Any] = {"n": 2, "width": 64, "height": 64, "steps": 2, "seed": 7}
    return ImageRequest(model="sd", prompt=prompt, **{**defaults, **fields})


def pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def soon() -> Deadline:
    return Deadline.after(120)


async def started(cfg: DiffusionDeploymentConfig, cache: PipelineCache | None = None) -> Any:
    engine = DiffusersEngine("sd/0", cfg, cache=cache or PipelineCache(2**40))
    await engine.start()
    return engine


@pytest.fixture(scope="module")
async def engine(tiny_sd_dir: Path) -> AsyncIterator[DiffusersEngine]:
    engine = await started(config(tiny_sd_dir, batch_wait_s=0.05))
    yield engine
    await engine.stop()


@pytest.fixture(scope="module")
async def baseline(engine: DiffusersEngine) -> list[np.ndarray]:
    result = await engine.generate_images(request(), soon())
    return [pixels(png) for png in result.images]


async def test_engine_implements_the_image_protocol_only(engine: DiffusersEngine) -> None:
    assert isinstance(engine, DiffusionEngine)
    assert not isinstance(engine, LLMEngine)
    assert engine.state is EngineState.READY


async def test_generates_64x64_pngs_in_2_steps(
    engine: DiffusersEngine, baseline: list[np.ndarray]
) -> None:
    assert len(baseline) == 2
    assert all(image.shape == (64, 64, 3) for image in baseline)
    assert not np.array_equal(baseline[0], baseline[1])  # image i uses seed + i


async def test_same_seed_same_bytes_other_seed_other_image(engine: DiffusersEngine) -> None:
    first = await engine.generate_images(request(n=1, seed=11), soon())
    again = await engine.generate_images(request(n=1, seed=11), soon())
    other = await engine.generate_images(request(n=1, seed=12), soon())
    assert first.images == again.images
    assert first.images != other.images


@pytest.mark.parametrize("option", MEMORY_OPTIONS)
def test_each_memory_option_is_applied_through_diffusers(tiny_sd_dir: Path, option: str) -> None:
    plain = load_pipeline(config(tiny_sd_dir)).pipe
    loaded = load_pipeline(config(tiny_sd_dir, **{option: True})).pipe
    applied = {
        "attention_slicing": lambda pipe: any(
            isinstance(p, SlicedAttnProcessor) for p in pipe.unet.attn_processors.values()
        ),
        "vae_slicing": lambda pipe: pipe.vae.use_slicing,
        "vae_tiling": lambda pipe: pipe.vae.use_tiling,
    }[option]
    assert applied(loaded) and not applied(plain)


@pytest.mark.parametrize("option", MEMORY_OPTIONS)
async def test_each_memory_option_generates_the_same_images(
    tiny_sd_dir: Path, baseline: list[np.ndarray], option: str
) -> None:
    engine = await started(config(tiny_sd_dir, **{option: True}))
    try:
        result = await engine.generate_images(request(), soon())
    finally:
        await engine.stop()
    images = [pixels(png) for png in result.images]
    assert [image.shape for image in images] == [(64, 64, 3)] * 2
    # slicing computes the same thing in pieces; tiling blends overlapping tiles at the seams
    tolerance = 60 if option == "vae_tiling" else 2
    for image, reference in zip(images, baseline, strict=True):
        assert np.abs(image - reference).max() <= tolerance, option


def test_every_configurable_scheduler_has_a_class() -> None:
    assert set(get_args(SchedulerName)) == set(SCHEDULERS)


async def test_negative_prompt_scheduler_and_default_size(engine: DiffusersEngine) -> None:
    result = await engine.generate_images(
        request(n=1, negative_prompt="blurry", scheduler="euler", width=None, height=None),
        soon(),
    )
    assert (result.width, result.height) == (64, 64)
    assert pixels(result.images[0]).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"width": 13, "height": 7}, "size"),
        ({"width": 60, "height": 64}, "size"),
        ({"width": 4096, "height": 64}, "size"),
        ({"steps": 151}, "steps"),
        ({"scheduler": "magic"}, "scheduler"),
    ],
)
async def test_bad_requests_are_400_naming_the_param(
    engine: DiffusersEngine, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        await engine.generate_images(request(**fields), soon())
    assert info.value.param == param
    assert info.value.status_code == 400


async def test_concurrent_requests_share_one_batch_and_keep_their_images(
    engine: DiffusersEngine, baseline: list[np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blaze_ai.engines.diffusion.runner")
    results = await asyncio.gather(
        engine.generate_images(request(), soon()),
        engine.generate_images(request("a blue ball", seed=100), soon()),
    )
    sizes = [
        r.__dict__["images"]
        for r in caplog.records
        if r.getMessage() == "image_generation_progress"
    ]
    assert sizes and set(sizes) == {4}, sizes  # one batch of 2 + 2 images
    assert [len(r.images) for r in results] == [2, 2]
    mine = [pixels(png) for png in results[0].images]
    for image, reference in zip(mine, baseline, strict=True):
        assert np.abs(image - reference).max() <= 2  # the same seeds give the same images


async def test_progress_is_logged_step_by_step(
    engine: DiffusersEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="blaze_ai.engines.diffusion.runner")
    await engine.generate_images(request(n=1, steps=3), soon())
    steps = [
        (r.__dict__["step"], r.__dict__["steps"])
        for r in caplog.records
        if r.getMessage() == "image_generation_progress"
    ]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert engine.progress.step == engine.progress.steps == 3


async def test_expired_deadline_is_a_timeout(engine: DiffusersEngine) -> None:
    clock = FakeClock()
    deadline = Deadline.after(1.0, clock)
    clock.advance(2.0)
    with pytest.raises(EngineTimeoutError):
        await engine.generate_images(request(), deadline)


async def test_evicted_pipeline_is_loaded_again_on_demand(tiny_sd_dir: Path) -> None:
    cache = PipelineCache(max_bytes=1)  # room for one pipeline only
    first = DiffusersEngine("sd/0", config(tiny_sd_dir), cache=cache)
    second = DiffusersEngine("digits/0", config("builtin:digits"), cache=cache)
    await first.start()
    await second.start()  # evicts the first one
    assert cache.stats().keys == ("digits/0",)
    try:
        result = await first.generate_images(request(n=1), soon())
    finally:
        await first.stop()
        await second.stop()
    assert len(result.images) == 1
    stats = cache.stats()
    assert (stats.loads, stats.evictions) == (3, 2)


async def test_unloadable_model_fails_the_engine(tmp_path: Path) -> None:
    engine = DiffusersEngine("x/0", config(tmp_path / "absent"), cache=PipelineCache(2**40))
    with pytest.raises(EngineDeadError):
        await engine.start()
    assert engine.state is EngineState.FAILED


async def test_vae_option_on_a_pipeline_without_vae_fails_naming_it() -> None:
    engine = DiffusersEngine(
        "d/0", config("builtin:digits", vae_slicing=True), cache=PipelineCache(2**40)
    )
    with pytest.raises(EngineDeadError, match="vae_slicing"):
        await engine.start()


async def test_a_request_for_many_images_takes_turns_in_groups(tiny_sd_dir: Path) -> None:
    """Issue 11: ``n`` images enter batches ``max_running_images_per_request`` at a time."""
    engine = await started(config(tiny_sd_dir, max_batch_size=4, batch_wait_s=0.0))
    try:
        result = await engine.generate_images(request(n=7, width=32, height=32), soon())
        assert len(result.images) == 7
        assert engine.load().peak_batch_size == 2  # half the batch
        alone = await engine.generate_images(request(n=1, width=32, height=32, seed=10), soon())
        assert pixels(result.images[3]).tolist() == pixels(alone.images[0]).tolist()  # seed 7+3
    finally:
        await engine.stop()


@pytest.mark.parametrize(
    ("fields", "limits", "param"),
    [
        ({"n": 3}, {"max_images_per_request": 2}, "n"),
        ({"n": 2, "steps": 5}, {"max_pixel_steps_per_request": 2 * 5 * 64 * 64 - 1}, "size"),
    ],
)
async def test_a_request_over_the_caps_is_refused_naming_the_param(
    tiny_sd_dir: Path, fields: dict[str, int], limits: dict[str, int], param: str
) -> None:
    engine = await started(config(tiny_sd_dir, **limits))
    try:
        with pytest.raises(InvalidRequestError) as raised:
            await engine.generate_images(request(**fields), soon())
        assert raised.value.param == param and raised.value.status_code == 400
    finally:
        await engine.stop()


def test_max_running_images_per_request_cannot_exceed_the_batch() -> None:
    with pytest.raises(ValueError, match="max_running_images_per_request"):
        config("/m", max_batch_size=2, max_running_images_per_request=3)


# --- review (issue 11): a request's later groups ---------------------------------------------


class _Batches:
    """Wraps the engine's ``run_batch``: records each batch's image counts; the first batch of
    the test can be held until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, hold: bool = False) -> None:
        import threading

        from blaze_ai.engines.diffusion import engine as engine_module

        self.sizes: list[list[int]] = []
        self.entered = threading.Event()
        self.go = threading.Event()
        if not hold:
            self.go.set()
        real = engine_module.run_batch

        def run_batch(loaded: Any, jobs: Any, progress: Any) -> Any:
            self.sizes.append([len(job.seeds) for job in jobs])
            self.entered.set()
            assert self.go.wait(30)
            return real(loaded, jobs, progress)

        monkeypatch.setattr(engine_module, "run_batch", run_batch)


@pytest.mark.parametrize("ending", ["cancelled", "deadline"])
async def test_review_a_request_ended_while_its_first_group_runs_runs_no_later_group(
    tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """Cancelled by its caller (the client went away) or timed out between groups."""
    batches = _Batches(monkeypatch, hold=True)
    engine = await started(config(tiny_sd_dir, max_batch_size=2, batch_wait_s=0.0))
    deadline = Deadline.after(0.5) if ending == "deadline" else soon()
    try:
        task = asyncio.create_task(
            engine.generate_images(request(n=5, width=32, height=32), deadline)
        )
        assert await asyncio.to_thread(batches.entered.wait, 10)
        if ending == "cancelled":
            task.cancel()
        expected = asyncio.CancelledError if ending == "cancelled" else EngineTimeoutError
        with pytest.raises(expected):
            await task
        batches.go.set()
        await asyncio.sleep(0.3)
        assert batches.sizes == [[1]]
        assert engine.load().in_flight == 0
    finally:
        batches.go.set()
        await engine.stop()


async def test_review_stop_between_groups_is_a_503_and_nothing_hangs(
    tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blaze_ai.errors import EngineUnavailableError

    batches = _Batches(monkeypatch, hold=True)
    engine = await started(config(tiny_sd_dir, max_batch_size=2, batch_wait_s=0.0))
    task = asyncio.create_task(engine.generate_images(request(n=5, width=32, height=32), soon()))
    assert await asyncio.to_thread(batches.entered.wait, 10)
    stopping = asyncio.create_task(engine.stop())
    await asyncio.sleep(0.05)
    batches.go.set()
    async with asyncio.timeout(20):
        await stopping
        with pytest.raises(EngineUnavailableError) as raised:
            await task
    assert raised.value.status_code == 503


async def test_review_every_image_keeps_its_seed_when_n_is_not_a_multiple_of_the_group(
    tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = _Batches(monkeypatch)
    engine = await started(config(tiny_sd_dir, max_batch_size=4, batch_wait_s=0.0))
    try:
        result = await engine.generate_images(request(n=5, width=32, height=32, seed=3), soon())
        assert batches.sizes == [[2], [2], [1]]
        assert len(result.images) == 5
        for i, png in enumerate(result.images):
            alone = await engine.generate_images(
                request(n=1, width=32, height=32, seed=3 + i), soon()
            )
            assert pixels(png).tolist() == pixels(alone.images[0]).tolist(), i
    finally:
        await engine.stop()


async def test_review_a_failed_later_group_fails_the_request(
    tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blaze_ai.engines.diffusion import engine as engine_module
    from blaze_ai.errors import EngineGenerationError

    real = engine_module.run_batch
    calls: list[int] = []

    def run_batch(loaded: Any, jobs: Any, progress: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(loaded, jobs, progress)

    monkeypatch.setattr(engine_module, "run_batch", run_batch)
    engine = await started(config(tiny_sd_dir, max_batch_size=2, batch_wait_s=0.0))
    try:
        with pytest.raises(EngineGenerationError):
            await engine.generate_images(request(n=3, width=32, height=32), soon())
        ok = await engine.generate_images(request(n=3, width=32, height=32), soon())
        assert len(ok.images) == 3
    finally:
        await engine.stop()


async def test_review_cancelled_while_a_group_is_encoded_no_later_group_runs(
    tiny_sd_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from blaze_ai.engines.diffusion import engine as engine_module

    batches = _Batches(monkeypatch)
    encoding, go = threading.Event(), threading.Event()
    real = engine_module.encode_pngs

    def encode_pngs(*args: Any) -> Any:
        encoding.set()
        assert go.wait(30)
        return real(*args)

    monkeypatch.setattr(engine_module, "encode_pngs", encode_pngs)
    engine = await started(config(tiny_sd_dir, max_batch_size=2, batch_wait_s=0.0))
    try:
        task = asyncio.create_task(
            engine.generate_images(request(n=5, width=32, height=32), soon())
        )
        assert await asyncio.to_thread(encoding.wait, 10)  # between its first and second group
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        go.set()
        await asyncio.sleep(0.3)
        assert batches.sizes == [[1]]
        assert engine.load().in_flight == 0
    finally:
        go.set()
        await engine.stop()
