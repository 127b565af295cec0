"""Internal request and response types, shared by every layer.

These are frozen dataclasses: pydantic lives only at the edges (HTTP bodies, config files).
The HTTP layer converts an OpenAI body into one of these with ``to_internal()``; engines never
see an HTTP body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class CacheStatus(StrEnum):
    """Where an answer came from, sent to clients as the ``X-Blaze-Cache`` header."""

    HIT_MEMORY = "hit-memory"
    HIT_DISK = "hit-disk"
    HIT_REDIS = "hit-redis"
    MISS = "miss"  # looked up, not found: the engine answered (and the answer may be stored)
    BYPASS = "bypass"  # not looked up: not cacheable, or the request said no-cache


@dataclass(frozen=True, slots=True)
class CacheDirectives:
    """A request's own cache controls (body ``cache`` field or headers).

    Attributes:
        no_cache: do not answer from the cache (the answer may still be stored).
        no_store: do not store the answer.
        ttl_s: how long the stored answer lives, in seconds; None: the model's default.
    """

    no_cache: bool = False
    no_store: bool = False
    ttl_s: float | None = None


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """The first item of a gateway stream when the gateway has a cache: where the answer
    comes from (known before any text)."""

    status: CacheStatus


class FinishReason(StrEnum):
    """Why a choice ended, in OpenAI's words."""

    STOP = "stop"  # end-of-sequence token or a stop sequence
    LENGTH = "length"  # max_tokens or the context window reached
    TOOL_CALLS = "tool_calls"  # from an upstream that called tools
    CONTENT_FILTER = "content_filter"  # from an upstream that filtered the output


ExtraParams = tuple[tuple[str, str], ...]
"""Request parameters Blaze's own engines do not interpret (``tools``, ``response_format``,
``logit_bias``...) as sorted ``(name, canonical JSON)`` pairs, with OpenAI's defaults left out.
They are part of the cache key; the remote engine forwards them upstream, and the local engine
refuses, with a 400, those it cannot honour (``logprobs``, ``suffix``...)."""


def decode_extra(params: ExtraParams) -> dict[str, Any]:
    """``params`` as a name -> JSON value mapping."""
    return {name: json.loads(value) for name, value in params}


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``content`` is plain text (content parts are joined by the API layer).

    ``extra_params`` keeps its other OpenAI fields (``tool_calls``, ``tool_call_id``...) for
    engines that forward them, in the same canonical form as a request's.
    """

    role: str
    content: str
    name: str | None = None
    extra_params: ExtraParams = ()


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
    """A chat completion request for one served model.

    ``tenant`` names who asks (an API key's team once auth exists; "" until then): cached
    answers are never shared between tenants unless the model is configured as shared.
    """

    model: str
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    user: str | None = None
    extra_params: ExtraParams = ()
    tenant: str = ""
    cache: CacheDirectives = field(default_factory=CacheDirectives)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A legacy text completion request for one prompt (the API fans a list out).

    ``prompt_count`` is how many prompts the API request it came from had: an engine's
    per-request caps (``n × max_tokens``) count all of them, so a list of prompts is no way
    around them.
    """

    model: str
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    user: str | None = None
    extra_params: ExtraParams = ()
    tenant: str = ""
    cache: CacheDirectives = field(default_factory=CacheDirectives)
    prompt_count: int = 1


TextRequest = ChatRequest | CompletionRequest


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request, counted with the model's tokenizer.

    ``cached_tokens`` are the prompt tokens served from a cache (all of them on a cache hit).
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0

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
    """A finished answer: one choice per ``n``, and the usage of the whole request.

    ``cache_status`` says where it came from when the gateway has a cache (else None).
    """

    choices: tuple[Choice, ...]
    usage: Usage
    cache_status: CacheStatus | None = None


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

GatewayStreamItem = CacheInfo | TextChunk | Usage
"""What the gateway's stream yields: a :class:`CacheInfo` first when it has a cache, then the
items of a :data:`StreamItem` stream."""


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
