"""Class-conditional models: prompts that name a class, and the embedded digits model."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
from PIL import Image

from blaze_ai.config.schema import DiffusionDeploymentConfig
from blaze_ai.engines.diffusion.class_conditional import ClassLabels
from blaze_ai.engines.diffusion.engine import DiffusersEngine
from blaze_ai.engines.diffusion.loader import SCHEDULERS
from blaze_ai.engines.diffusion.pipeline_cache import PipelineCache
from blaze_ai.errors import InvalidRequestError
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ImageRequest

DIGITS = ClassLabels(
    labels=tuple(str(d) for d in range(10)),
    null_class=10,
    aliases={"seven": 7, "three": 3},
)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a handwritten digit 7", 7),
        ("7", 7),
        ("Seven, please", 7),
        ("the digit 3 (three)", 3),
        ("3 3 3", 3),
    ],
)
def test_the_prompt_names_the_class(prompt: str, expected: int) -> None:
    assert DIGITS.class_of(prompt) == expected


@pytest.mark.parametrize("prompt", ["a cat", "", "a 3 and a 4", "17", "seven or 3"])
def test_a_prompt_naming_no_class_or_several_is_a_400(prompt: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        DIGITS.class_of(prompt)
    assert info.value.param == "prompt"
    assert "0, 1, 2" in info.value.message


@pytest.fixture(scope="module")
async def digits() -> AsyncIterator[DiffusersEngine]:
    config = DiffusionDeploymentConfig(engine="diffusion", model="builtin:digits")
    engine = DiffusersEngine("digits/0", config, cache=PipelineCache(2**30))
    await engine.start()
    yield engine
    await engine.stop()


async def test_builtin_digits_defaults(digits: DiffusersEngine) -> None:
    info = digits.info
    assert info is not None and info.classes is not None
    assert info.classes.labels == tuple("0123456789")
    assert (info.steps, info.guidance_scale, info.eta, info.scheduler) == (25, 2.0, 1.0, "ddim")
    result = await digits.generate_images(
        ImageRequest(model="digits", prompt="a handwritten digit 7"), Deadline.after(60)
    )
    assert (result.width, result.height) == (256, 256)
    image = Image.open(io.BytesIO(result.images[0]))
    assert image.size == (256, 256)
    # enlarged with nearest-neighbour: every 32x32 block is one colour
    block = np.asarray(image.crop((32, 32, 64, 64))).reshape(-1, 3)
    assert len(np.unique(block, axis=0)) == 1


async def test_digits_sizes_are_multiples_of_8(digits: DiffusersEngine) -> None:
    result = await digits.generate_images(
        ImageRequest(model="digits", prompt="1", n=3, width=16, height=24, seed=1),
        Deadline.after(60),
    )
    assert [Image.open(io.BytesIO(png)).size for png in result.images] == [(16, 24)] * 3
    with pytest.raises(InvalidRequestError) as info:
        await digits.generate_images(
            ImageRequest(model="digits", prompt="1", width=13, height=7), Deadline.after(60)
        )
    assert info.value.param == "size"


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
async def test_every_scheduler_samples_the_class_model(
    digits: DiffusersEngine, scheduler: str
) -> None:
    req = ImageRequest(
        model="digits", prompt="5", width=8, height=8, steps=5, seed=0, scheduler=scheduler
    )
    result = await digits.generate_images(req, Deadline.after(60))
    pixels = np.asarray(Image.open(io.BytesIO(result.images[0])))
    assert pixels.shape == (8, 8, 3) and pixels.max() > pixels.min()
