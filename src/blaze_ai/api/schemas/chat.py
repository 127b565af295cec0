"""``POST /v1/chat/completions`` request body."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from blaze_ai.api.schemas.base import INTEGRAL, OpenAIBaseModel, SamplingFields
from blaze_ai.api.schemas.extra import extra_params
from blaze_ai.types import CacheDirectives, ChatRequest, Message

Role = Literal["system", "developer", "user", "assistant", "tool"]


class TextContentPart(OpenAIBaseModel):
    """A ``{"type": "text", "text": ...}`` content part (the only kind a text model takes)."""

    type: Literal["text"]
    text: str


CONTENT_REQUIRED_UNLESS_ASSISTANT: JsonDict = {
    "anyOf": [
        {"properties": {"role": {"const": "assistant"}}},
        {"required": ["content"], "properties": {"content": {"not": {"type": "null"}}}},
    ]
}
"""The document's form of ``_content_required``: only an assistant message may omit content."""


class ChatMessageParam(OpenAIBaseModel):
    """One message of ``messages``; ``content`` may be null or absent only for ``assistant``."""

    model_config = ConfigDict(json_schema_extra=CONTENT_REQUIRED_UNLESS_ASSISTANT)

    role: Role
    content: str | list[TextContentPart] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _content_required(self) -> ChatMessageParam:
        if self.content is None and self.role != "assistant":
            raise ValueError(f"content is required for role '{self.role}'")
        return self

    def text(self) -> str:
        """The content as one string (text parts joined by newlines)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    """The OpenAI chat completion body (fields Blaze does not use are ignored)."""

    messages: list[ChatMessageParam] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1), INTEGRAL] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20), INTEGRAL] | None = None

    EXTRA_KEYED: ClassVar[tuple[str, ...]] = ("logprobs", "top_logprobs")

    def to_internal(
        self, request_id: str, cache: CacheDirectives | None = None, tenant: str = ""
    ) -> ChatRequest:
        """The internal request of ``tenant`` (the key's team; it scopes the response cache);
        ``max_completion_tokens`` wins over ``max_tokens``.

        Options only some engines honour (``logprobs``) travel in ``extra_params``; an engine
        that cannot honour them answers 400.
        """
        max_tokens = self.max_completion_tokens or self.max_tokens
        messages = tuple(
            Message(
                role="system" if m.role == "developer" else m.role,
                content=m.text(),
                name=m.name,
                extra_params=extra_params(m.model_extra or {}),
            )
            for m in self.messages
        )
        return ChatRequest(
            model=self.model,
            messages=messages,
            params=self.sampling_params(max_tokens),
            request_id=request_id,
            user=self.user,
            extra_params=self.extra_params(),
            tenant=tenant,
            cache=cache or CacheDirectives(),
        )
