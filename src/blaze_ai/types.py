"""Internal request and response types, shared by every layer.

These are frozen dataclasses: pydantic lives only at the edges (HTTP bodies, config files).
The HTTP layer converts an OpenAI body into one of these with ``to_internal()``; engines never
see an HTTP body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FinishReason(StrEnum):
    """Why a choice ended, in OpenAI's words."""

    STOP = "stop"  # end-of-sequence token or a stop sequence
    LENGTH = "length"  # max_tokens or the context window reached


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``content`` is plain text (content parts are joined by the API layer)."""

    role: str
    content: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """Generation parameters, with OpenAI's defaults already filled in.

    Attributes:
        max_tokens: most completion tokens per choice; None means up to the context window.
        temperature: 0 means greedy decoding.
        top_p: nucleus sampling mass in (0, 1].
        stop: stop sequences; the matched text is cut from the output.
        seed: makes sampling reproducible on the same engine and hardware.
        n: choices to generate for the prompt.
        presence_penalty: subtracted once from the logit of every token already generated.
        frequency_penalty: subtracted from a token's logit once per time it was generated.
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat completion request for one served model."""

    model: str
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    user: str | None = None


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A legacy text completion request for one prompt (the API fans a list out)."""

    model: str
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    user: str | None = None


TextRequest = ChatRequest | CompletionRequest


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request, counted with the model's tokenizer."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """prompt_tokens + completion_tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Choice:
    """One finished choice of a non-streamed answer."""

    index: int
    text: str
    finish_reason: FinishReason


@dataclass(frozen=True, slots=True)
class TextResult:
    """A finished answer: one choice per ``n``, and the usage of the whole request."""

    choices: tuple[Choice, ...]
    usage: Usage


@dataclass(frozen=True, slots=True)
class TextChunk:
    """A streamed piece of one choice.

    ``text`` is new text only (may be empty). ``finish_reason`` is set on the choice's last chunk.
    """

    index: int
    text: str
    finish_reason: FinishReason | None = None


StreamItem = TextChunk | Usage
"""What a stream yields: text chunks, then exactly one :class:`Usage` as its last item."""


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """An image generation request for one served model.

    Attributes:
        prompt: what to draw (a class name for class-conditional models).
        n: images to generate (1-10).
        width, height: image size in pixels; None uses the model's default size.
        negative_prompt: what to steer away from (text-conditioned models with guidance).
        steps: denoising steps; None uses the deployment's or the model's default.
        guidance_scale: classifier-free guidance weight; None uses the default.
        seed: image ``i`` of the request is generated from seed ``seed + i``, so the same seed
            and parameters give the same images; None draws a random seed.
        scheduler: a scheduler name (see the config's ``scheduler``); None uses the default.
    """

    model: str
    prompt: str
    n: int = 1
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    seed: int | None = None
    scheduler: str | None = None
    request_id: str = ""
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ImageResult:
    """Generated images, PNG-encoded, in request order.

    Attributes:
        images: one PNG file (bytes) per requested image.
        width, height: size of every image, in pixels.
    """

    images: tuple[bytes, ...]
    width: int
    height: int
