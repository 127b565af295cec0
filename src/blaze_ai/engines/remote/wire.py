"""Translate internal requests to OpenAI request bodies and OpenAI responses back.

Used by the remote engine to talk to any OpenAI-compatible upstream (vLLM, TGI, Ollama,
llama.cpp server, OpenAI). Upstream errors are mapped onto Blaze's exception tree so the router
knows what to retry: 4xx are client errors (never retried, never counted against the upstream),
429, 5xx and timeouts are retryable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from blaze_ai.errors import (
    AuthenticationError,
    BlazeError,
    ContextLengthExceededError,
    EngineGenerationError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    ModelNotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UpstreamRateLimitError,
    UpstreamStreamError,
)
from blaze_ai.types import (
    ChatRequest,
    Choice,
    FinishReason,
    Message,
    StreamItem,
    TextChunk,
    TextRequest,
    TextResult,
    Usage,
    decode_extra,
)

_RESERVED = frozenset({"model", "messages", "prompt", "stream", "stream_options"})
_CLIENT_ERRORS: dict[int, type[BlazeError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: ModelNotFoundError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
}


def endpoint(req: TextRequest) -> str:
    """The upstream path for ``req``: ``/chat/completions`` or ``/completions``."""
    return "/chat/completions" if isinstance(req, ChatRequest) else "/completions"


def request_body(req: TextRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The OpenAI JSON body for ``req``, naming the upstream's ``model``."""
    params = req.params
    body: dict[str, Any] = {"model": model}
    if isinstance(req, ChatRequest):
        body["messages"] = [_message(m) for m in req.messages]
    else:
        body["prompt"] = req.prompt
    body.update(
        temperature=params.temperature,
        top_p=params.top_p,
        n=params.n,
    )
    optional = {
        "max_tokens": params.max_tokens,
        "stop": list(params.stop) or None,
        "seed": params.seed,
        "presence_penalty": params.presence_penalty or None,
        "frequency_penalty": params.frequency_penalty or None,
        "user": req.user,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    extra = decode_extra(req.extra_params)
    body.update({k: v for k, v in extra.items() if k not in _RESERVED})
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    out.update(decode_extra(message.extra_params))
    return out


def parse_result(data: Any, chat: bool) -> TextResult:
    """A non-streamed OpenAI response as a :class:`TextResult`.

    Raises:
        EngineGenerationError: the body is not a completion object.
    """
    try:
        choices = tuple(
            Choice(
                index=int(c.get("index", i)),
                text=_choice_text(c, chat),
                finish_reason=finish_reason(c.get("finish_reason")),
            )
            for i, c in enumerate(data["choices"])
        )
        return TextResult(choices=choices, usage=parse_usage(data.get("usage")))
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise EngineGenerationError(f"upstream sent an invalid completion: {exc!r}") from exc


def _choice_text(choice: Mapping[str, Any], chat: bool) -> str:
    if chat:
        return str(choice["message"].get("content") or "")
    return str(choice.get("text") or "")


def stream_items(event: Mapping[str, Any], chat: bool) -> Iterator[StreamItem]:
    """The internal items of one upstream SSE chunk.

    Raises:
        UpstreamStreamError: the upstream sent an error event (its type and code are kept).
    """
    if "error" in event:
        error = event["error"]
        if isinstance(error, dict):
            raise UpstreamStreamError(
                str(error.get("message") or "upstream error"),
                upstream_type=_str_or_none(error.get("type")),
                code=_str_or_none(error.get("code")),
            )
        raise UpstreamStreamError(str(error), upstream_type=None, code=None)
    for i, choice in enumerate(event.get("choices") or ()):
        text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
        reason = choice.get("finish_reason")
        yield TextChunk(
            index=int(choice.get("index", i)),
            text=str(text or ""),
            finish_reason=finish_reason(reason) if reason else None,
        )
    if event.get("usage"):
        yield parse_usage(event["usage"])


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_usage(usage: Any) -> Usage:
    """OpenAI's ``usage`` object (missing counts are 0)."""
    if not isinstance(usage, dict):
        return Usage(0, 0)
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


def finish_reason(value: Any) -> FinishReason:
    """An upstream ``finish_reason``; unknown values read as ``stop``."""
    try:
        return FinishReason(value)
    except ValueError:
        return FinishReason.STOP


def upstream_error(status: int, body: bytes, retry_after: str | None) -> BlazeError:
    """The Blaze error for an upstream HTTP error ``status`` with ``body``."""
    message, param, code = _error_fields(body)
    retry_after_s = _seconds(retry_after)
    if code == "context_length_exceeded":
        return ContextLengthExceededError(message, param=param)
    if status in _CLIENT_ERRORS:
        return _CLIENT_ERRORS[status](message, param=param, code=code)
    if status == 429:
        return UpstreamRateLimitError(
            f"upstream is rate limited: {message}", retry_after_s=retry_after_s
        )
    if status in (408, 504):
        return EngineTimeoutError(f"upstream timed out: {message}")
    if status >= 500:
        return EngineUnavailableError(
            f"upstream error {status}: {message}", retry_after_s=retry_after_s
        )
    return InvalidRequestError(message, param=param, code=code)


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    text = body.decode("utf-8", "replace")[:2000]
    try:
        data = json.loads(text)
    except ValueError:
        return (text.strip() or "upstream error"), None, None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        return (
            str(error.get("message") or "upstream error"),
            error.get("param"),
            None if code is None else str(code),
        )
    if isinstance(error, str):  # some servers (TGI, Ollama) send {"error": "..."}
        return error, None, None
    return text.strip() or "upstream error", None, None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from model servers; fall back to the breaker
