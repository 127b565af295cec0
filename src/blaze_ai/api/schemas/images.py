"""``POST /v1/images/generations`` request body."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator

from blaze_ai.api.schemas.base import INT64_MAX, INTEGRAL, OpenAIBaseModel
from blaze_ai.config.deployments import SchedulerName
from blaze_ai.types import ImageRequest

MAX_IMAGES = 10  # OpenAI's bound on n
MAX_SEED = INT64_MAX - (MAX_IMAGES - 1)
"""Image ``i`` uses seed ``seed + i``, which must fit in 64 bits (wrapping would repeat another
seed's images)."""
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
SIZE_PATTERN = r"^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$"
NOT_BLANK = r"[^ \t\n\r\f\v]"
"""A character other than ASCII white space (the same test in Python and in the document)."""


class ImageGenerationRequest(OpenAIBaseModel):
    """The OpenAI image generation body, plus Blaze's extension fields.

    OpenAI fields: ``model``, ``prompt``, ``n`` (1-10), ``size`` (``WIDTHxHEIGHT`` or ``auto``:
    the model's default), ``response_format`` (``url``, the default as with DALL-E, or
    ``b64_json``), ``user``; ``quality`` and ``style`` are accepted and ignored. Extensions:
    ``seed`` (image ``i`` uses ``seed + i``), ``steps``, ``guidance_scale``,
    ``negative_prompt``, ``scheduler``. Unknown fields are ignored.
    """

    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1, max_length=32000, json_schema_extra={"pattern": NOT_BLANK})
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES), INTEGRAL] = 1
    size: str | None = Field(
        default=None,
        json_schema_extra={"pattern": SIZE_PATTERN},
        description="`WIDTHxHEIGHT` in pixels, or `auto` (the model's default). Each model "
        "makes only some sizes (multiples of its native size, at most 2048 a side); others "
        "are refused with 400 naming `size`.",
    )
    response_format: Literal["url", "b64_json"] | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED), INTEGRAL] | None = None
    steps: Annotated[int, Field(ge=1, le=1000), INTEGRAL] | None = Field(
        default=None,
        description="Denoising steps; a deployment allows at most its `max_steps` (400 beyond).",
    )
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    negative_prompt: str | None = Field(default=None, max_length=32000)
    scheduler: SchedulerName | None = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not re.search(NOT_BLANK, value):
            raise ValueError("prompt must not be empty")
        return value

    @field_validator("size")
    @classmethod
    def _size_format(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or _SIZE.match(value):
            return value
        raise ValueError("size must be WIDTHxHEIGHT in pixels (for example 512x512) or auto")

    def dimensions(self) -> tuple[int, int] | None:
        """``(width, height)``, or None for the model's default size."""
        match = _SIZE.match(self.size or "")
        return (int(match.group(1)), int(match.group(2))) if match else None

    def to_internal(self, request_id: str) -> ImageRequest:
        """The internal request."""
        width, height = self.dimensions() or (None, None)
        return ImageRequest(
            model=self.model,
            prompt=self.prompt,
            n=self.n,
            width=width,
            height=height,
            negative_prompt=self.negative_prompt,
            steps=self.steps,
            guidance_scale=self.guidance_scale,
            seed=self.seed,
            scheduler=self.scheduler,
            request_id=request_id,
            user=self.user,
        )
