"""``POST /v1/completions`` request body (legacy text completions)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from blaze_ai.api.schemas.base import INTEGRAL, MAX_N, SamplingFields
from blaze_ai.errors import InvalidRequestError
from blaze_ai.types import CacheDirectives, CompletionRequest

MAX_PROMPTS = 64
MAX_SEQUENCES = 128  # prompts x n: OpenAI's own cap on n, for the whole request
DEFAULT_MAX_TOKENS = 16  # OpenAI's default for legacy completions


class CompletionRequestBody(SamplingFields):
    """The OpenAI completion body: ``prompt`` is a string or a list of strings.

    As in OpenAI's API, ``max_tokens`` defaults to 16 here.
    """

    prompt: (
        Annotated[str, Field(min_length=1)]
        | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
    ) = Field(description=f"One prompt, or a list of 1 to {MAX_PROMPTS}.")
    n: Annotated[int, Field(ge=1, le=MAX_N), INTEGRAL] = Field(
        default=1,
        description=f"Completions per prompt; prompts x n may not exceed {MAX_SEQUENCES}.",
    )
    echo: bool = False
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1), INTEGRAL] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5), INTEGRAL] | None = None

    EXTRA_KEYED: ClassVar[tuple[str, ...]] = ("suffix", "best_of", "logprobs")

    def prompts(self) -> list[str]:
        """``prompt`` as a list."""
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def to_internal(
        self, request_id: str, cache: CacheDirectives | None = None, tenant: str = ""
    ) -> list[CompletionRequest]:
        """One internal request per prompt, of ``tenant`` (the key's team).

        ``suffix``, ``best_of`` and ``logprobs`` travel in ``extra_params``; an engine that
        cannot honour them answers 400.

        Raises:
            InvalidRequestError: more than ``MAX_SEQUENCES`` completions (prompts x ``n``).
        """
        prompts = self.prompts()
        if len(prompts) * self.n > MAX_SEQUENCES:
            raise InvalidRequestError(
                f"{len(prompts)} prompts x n={self.n} asks for more than {MAX_SEQUENCES} "
                "completions in one request",
                param="n",
            )
        params = self.sampling_params(self.max_tokens or DEFAULT_MAX_TOKENS)
        extra = self.extra_params()
        return [
            CompletionRequest(
                model=self.model,
                prompt=p,
                params=params,
                request_id=request_id,
                user=self.user,
                extra_params=extra,
                tenant=tenant,
                cache=cache or CacheDirectives(),
                prompt_count=len(prompts),
            )
            for p in prompts
        ]
