"""The OpenAI response bodies Blaze sends, as documented in ``/openapi.json``.

Documentation only: the hot routes build these bodies as plain dicts
(:mod:`blaze_ai.api.openai_format`), and the tests check that what they send matches these
models (``tests/api/test_openapi_document.py`` and the schemathesis run). Unknown fields are
forbidden, so a field added to a body without being documented here fails those tests.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FinishReasonName = Literal["stop", "length", "tool_calls", "content_filter"]
"""Why a choice ended (:class:`blaze_ai.types.FinishReason`)."""


class ResponseBody(BaseModel):
    """Base of the documented response bodies: no field beyond those declared."""

    model_config = ConfigDict(extra="forbid")


class PromptTokensDetails(ResponseBody):
    """``cached_tokens``: prompt tokens served from a cache (all of them on a cache hit)."""

    cached_tokens: int = Field(ge=0)


class CompletionUsage(ResponseBody):
    """Token counts of a whole response (every choice, every prompt)."""

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    total_tokens: int = Field(ge=0)
    prompt_tokens_details: PromptTokensDetails


class AssistantMessage(ResponseBody):
    """The generated message of one chat choice."""

    role: Literal["assistant"]
    content: str
    refusal: None


class ChatChoice(ResponseBody):
    """One choice of a chat completion (``index`` 0 to ``n - 1``)."""

    index: int = Field(ge=0)
    message: AssistantMessage
    logprobs: None
    finish_reason: FinishReasonName


class ChatCompletion(ResponseBody):
    """``POST /v1/chat/completions`` without ``stream``."""

    id: str
    object: Literal["chat.completion"]
    created: int = Field(description="Unix time, in seconds.")
    model: str = Field(description="The model as the request named it.")
    choices: list[ChatChoice]
    usage: CompletionUsage


class ChatDelta(ResponseBody):
    """What a chunk adds to a choice: ``role`` in the choice's first chunk, then ``content``
    (absent in a chunk that only carries the ``finish_reason``)."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(ResponseBody):
    """One choice's part in a stream chunk; ``finish_reason`` is null until its last chunk."""

    index: int = Field(ge=0)
    delta: ChatDelta
    logprobs: None
    finish_reason: FinishReasonName | None


class ChatCompletionChunk(ResponseBody):
    """One event of a streamed chat completion (``stream: true``).

    Every chunk of a stream has the same ``id`` and ``created``. With
    ``stream_options.include_usage`` every chunk has ``"usage": null`` and one last chunk with
    ``choices: []`` carries the usage; otherwise chunks have no ``usage`` field.
    """

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = None


class TextChoice(ResponseBody):
    """One choice of a text completion: ``index`` is ``prompt_index * n + choice``."""

    index: int = Field(ge=0)
    text: str = Field(description="The completion, after the prompt when `echo` is true.")
    logprobs: None
    finish_reason: FinishReasonName


class TextCompletion(ResponseBody):
    """``POST /v1/completions`` without ``stream``."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: CompletionUsage


class TextChunkChoice(ResponseBody):
    """One choice's text in a stream chunk; ``finish_reason`` is null until its last chunk."""

    index: int = Field(ge=0)
    text: str
    logprobs: None
    finish_reason: FinishReasonName | None


class TextCompletionChunk(ResponseBody):
    """One event of a streamed text completion (``usage`` as in a chat chunk)."""

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChunkChoice]
    usage: CompletionUsage | None = None


class ModelCard(ResponseBody):
    """A served model (by name; its aliases resolve too but are not listed)."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(ResponseBody):
    """``GET /v1/models``."""

    object: Literal["list"]
    data: list[ModelCard]


class GeneratedImage(ResponseBody):
    """One image: ``url`` (``response_format: url``, the default) or ``b64_json`` (a PNG)."""

    url: str | None = Field(default=None, description="Valid for `server.image_url_ttl_s`.")
    b64_json: str | None = None
    revised_prompt: None


class ImagesResponse(ResponseBody):
    """``POST /v1/images/generations``."""

    created: int
    data: list[GeneratedImage]
    output_format: Literal["png"]
    size: str = Field(pattern=r"^[1-9][0-9]*x[1-9][0-9]*$", description="WIDTHxHEIGHT")
