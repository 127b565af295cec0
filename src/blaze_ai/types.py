"""Internal request and response types, shared by every layer.

These are frozen dataclasses: pydantic lives only at the edges (HTTP bodies, config files).
The HTTP layer converts an OpenAI body into one of these with ``to_internal()``; engines never
see an HTTP body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class FinishReason(StrEnum):
    """Why a choice ended, in OpenAI's words."""

    STOP = "stop"  # end-of-sequence token or a stop sequence
    LENGTH = "length"  # max_tokens or the context window reached
    TOOL_CALLS = "tool_calls"  # from an upstream that called tools
    CONTENT_FILTER = "content_filter"  # from an upstream that filtered the output


EMPTY_EXTRA: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``content`` is plain text (content parts are joined by the API layer).

    ``extra`` keeps other OpenAI message fields (``tool_calls``, ``tool_call_id``...) for
    engines that forward them.
    """

    role: str
    content: str
    name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY_EXTRA)


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

    ``extra`` holds the OpenAI body fields Blaze does not model itself (``tools``,
    ``response_format``, ``logprobs``, ``logit_bias``, unknown fields...): a remote engine
    forwards them upstream, a local engine refuses the ones it cannot honour.
    """

    model: str
    messages: tuple[Message, ...]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    user: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY_EXTRA)


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A legacy text completion request for one prompt (the API fans a list out).

    ``extra``: as for :class:`ChatRequest` (``echo`` is applied by the API, never sent on).
    """

    model: str
    prompt: str
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = ""
    user: str | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY_EXTRA)


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
