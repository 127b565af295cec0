"""Shared pieces of the OpenAI request bodies.

Bodies are validated strictly (a string is not silently turned into a number) and unknown fields
are accepted and ignored, as OpenAI-compatible servers do; the ignored names are logged at debug.
"""

from __future__ import annotations

import logging
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from blaze_ai.api.cache_control import CacheControlParam
from blaze_ai.api.schemas.extra import extra_params
from blaze_ai.types import ExtraParams, SamplingParams

logger = logging.getLogger(__name__)

MAX_N = 128
MAX_STOP_SEQUENCES = 16
INT64_MAX = 2**63 - 1


def _integral_float_as_int(value: object) -> object:
    """``2.0`` -> ``2``: JSON Schema (and the document) counts a number without a fraction as
    an integer; anything else is left to strict validation."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


INTEGRAL = BeforeValidator(_integral_float_as_int)
"""Last in an integer field's ``Annotated`` (after its bounds, which keeps them in the JSON
schema): the field takes a JSON integer or a number with no fractional part (``3600.0``),
never a string or a boolean."""

StopSequence = Annotated[str, Field(min_length=1)]
Stop = StopSequence | Annotated[list[StopSequence], Field(max_length=MAX_STOP_SEQUENCES)]
"""``stop``: one sequence or a list of at most 16, none of them empty."""


class OpenAIBaseModel(BaseModel):
    """Strict validation; extra fields kept aside (``model_extra``) and ignored."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    @model_validator(mode="after")
    def _log_ignored_fields(self) -> OpenAIBaseModel:
        if self.model_extra:
            logger.debug(
                "ignored_request_fields",
                extra={"schema": type(self).__name__, "fields": sorted(self.model_extra)},
            )
        return self


class StreamOptions(OpenAIBaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with the usage."""

    include_usage: bool = False


class SamplingFields(OpenAIBaseModel):
    """Generation parameters shared by chat and text completions, with OpenAI's ranges."""

    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: Annotated[int, Field(ge=1, le=MAX_N), INTEGRAL] = 1
    max_tokens: Annotated[int, Field(ge=1), INTEGRAL] | None = None
    stop: Stop | None = None
    seed: Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX), INTEGRAL] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = None
    cache: CacheControlParam | None = None  # Blaze's own: per-request cache controls

    EXTRA_KEYED: ClassVar[tuple[str, ...]] = ()
    """Declared fields that change the answer but are not in :class:`SamplingParams`."""

    @property
    def include_usage(self) -> bool:
        """True when a streamed answer must end with a usage chunk."""
        return self.stream_options is not None and self.stream_options.include_usage

    def stop_sequences(self) -> tuple[str, ...]:
        """``stop`` as a tuple (a single string becomes one sequence)."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def extra_params(self) -> ExtraParams:
        """Unknown fields and :attr:`EXTRA_KEYED` fields as canonical pairs (defaults left out)."""
        fields = {**(self.model_extra or {})}
        fields.update({name: getattr(self, name) for name in self.EXTRA_KEYED})
        return extra_params(fields)

    def sampling_params(self, max_tokens: int | None) -> SamplingParams:
        """The internal parameters, with OpenAI's defaults (temperature 1, top_p 1)."""
        temperature = 1.0 if self.temperature is None else self.temperature
        top_p = 1.0 if self.top_p is None else self.top_p
        if top_p == 0.0:  # no probability mass left but the most likely token: greedy
            temperature = 0.0
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p or 1.0,
            stop=self.stop_sequences(),
            seed=self.seed,
            n=self.n,
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
        )
