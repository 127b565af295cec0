"""What one HTTP request used, as the gateway saw it: the :class:`Meter`.

The auth layer opens a meter for each authenticated request; the gateway admits it against
the principal's limits (once, on the request's first gateway call: a list of prompts is one
request), adds the tokens and images of each answer, and names the deployment that answered;
when the response has ended, :class:`~blaze_ai.tenancy.service.Tenancy` settles the limits with
what was really used and writes the usage record.

Counting rules (the README's "Keys and limits" says the same):

- an engine answer charges its prompt and completion tokens;
- a stream the client left charges its prompt (estimated: about 4 characters per token) and
  the tokens streamed until then (one per chunk);
- a response-cache hit counts a request and its prompt tokens but no completion tokens (the
  replayed ones are recorded as ``cached_tokens``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from blaze_ai.tenancy.limits import Ticket
from blaze_ai.tenancy.types import Principal
from blaze_ai.types import ChatRequest, TextRequest, Usage

CHARS_PER_TOKEN = 4
"""The prompt-size estimate of a reservation (made before any tokenizer has seen the prompt):
about four characters per token, as OpenAI's rule of thumb; the real count replaces it."""

TOKENS_PER_MESSAGE = 4
"""What a chat template adds around each message (role and separators), and again once for
the assistant's turn: OpenAI's cookbook counts 3-4 per message and 3 for the reply."""


@dataclass(slots=True)
class Meter:
    """The running account of one request (mutable; owned by that request).

    Attributes:
        principal: who asks.
        ticket: the limits' admission, once the gateway admitted the request.
        admission: the admission in progress (the prompts of a list call the gateway at once,
            and all wait for this one).
        prompt_tokens, completion_tokens, cached_tokens, images: used so far.
        deployment: the deployment of the last engine answer (None: none, or cache hits only).
        model: the served model's canonical name, once resolved.
    """

    principal: Principal
    ticket: Ticket | None = None
    admission: asyncio.Future[Ticket] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    images: int = 0
    deployment: str | None = None
    model: str | None = None

    async def admitted(self, admit: Callable[[], Awaitable[Ticket]]) -> Ticket:
        """The request's ticket: ``admit()`` on the first call, the same admission for the
        calls made meanwhile (the prompts of a list). The ticket is kept even when the caller
        is cancelled while it comes, so it is settled at the end all the same."""
        if self.ticket is not None:
            return self.ticket
        if self.admission is None:
            self.admission = asyncio.ensure_future(admit())
            self.admission.add_done_callback(self._keep_ticket)
        return await asyncio.shield(self.admission)

    def _keep_ticket(self, admission: asyncio.Future[Ticket]) -> None:
        if not admission.cancelled() and admission.exception() is None:
            self.ticket = admission.result()

    def abandon_admission(self) -> None:
        """The request ended while its admission was still counting: cancel it (the limiter
        gives back what it had taken)."""
        if self.admission is not None and not self.admission.done():
            self.admission.cancel()

    def add_answer(self, usage: Usage) -> None:
        """An engine's answer (or a finished stream's usage)."""
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens

    def add_cache_hit(self, usage: Usage) -> None:
        """An answer replayed from the response cache: its prompt is charged, its completion is
        recorded as cached."""
        self.prompt_tokens += usage.prompt_tokens
        self.cached_tokens += usage.completion_tokens

    def add_partial(self, prompt_tokens: int, completion_tokens: int) -> None:
        """A stream that ended before its usage (the client left): its prompt (estimated)
        and the tokens it streamed."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens

    @property
    def charged_tokens(self) -> int:
        """Tokens counted against ``tpm``: prompt + completion (cached ones are not)."""
        return self.prompt_tokens + self.completion_tokens


def reserved_tokens(req: TextRequest, default_max_tokens: int) -> int:
    """Tokens a text request reserves against ``tpm`` at admission: its prompt (estimated) and
    every choice's ``max_tokens`` (``default_max_tokens`` when unset), for each of the prompts
    of its API request (a list of prompts is admitted once, for all)."""
    prompts = 1 if isinstance(req, ChatRequest) else req.prompt_count
    completion = (req.params.max_tokens or default_max_tokens) * req.params.n
    return prompts * (estimated_prompt_tokens(req) + completion)


def estimated_prompt_tokens(req: TextRequest) -> int:
    """The prompt's tokens by :data:`CHARS_PER_TOKEN`, and the chat template's
    :data:`TOKENS_PER_MESSAGE` (before a tokenizer has counted them)."""
    if isinstance(req, ChatRequest):
        chars = sum(len(m.content) for m in req.messages)
        template = TOKENS_PER_MESSAGE * (len(req.messages) + 1)
    else:
        chars = len(req.prompt)
        template = 0
    return -(-chars // CHARS_PER_TOKEN) + template
