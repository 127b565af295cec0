"""``POST /v1/images/generations`` request body."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from blaze_ai.api.schemas.base import INT64_MAX, OpenAIBaseModel
from blaze_ai.errors import InvalidRequestError
from blaze_ai.types import ImageRequest

MAX_IMAGES = 10  # OpenAI's bound on n
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


class ImageGenerationRequest(OpenAIBaseModel):
    """The OpenAI image generation body, plus Blaze's extension fields.

    OpenAI fields: ``model``, ``prompt``, ``n`` (1-10), ``size`` (``WIDTHxHEIGHT`` or ``auto``:
    the model's default), ``response_format`` (``url``, the default as with DALL-E, or
    ``b64_json``), ``user``; ``quality`` and ``style`` are accepted and ignored. Extensions:
    ``seed`` (image ``i`` uses ``seed + i``), ``steps``, ``guidance_scale``,
    ``negative_prompt``, ``scheduler``. Unknown fields are ignored.
    """

    model: str = Field(min_length=1)
    prompt: str = Field(min_length=1, max_length=32000)
    n: int = Field(default=1, ge=1, le=MAX_IMAGES)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    seed: int | None = Field(default=None, ge=0, le=INT64_MAX)
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=50.0)
    negative_prompt: str | None = Field(default=None, max_length=32000)
    scheduler: str | None = None

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
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
        """The internal request.

        Raises:
            InvalidRequestError: ``seed + n - 1`` does not fit in 64 bits (image ``i`` uses
                seed ``seed + i``; wrapping would repeat another seed's images).
        """
        if self.seed is not None and self.seed + self.n - 1 > INT64_MAX:
            raise InvalidRequestError(f"seed + n - 1 must be at most {INT64_MAX}", param="seed")
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
