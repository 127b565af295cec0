"""Answers as cache payloads: compact JSON bytes, decoded back into the same frozen types.

Only what the engine produced is stored (choices and token counts); where the answer came from
and cached-token counts are set when it is served.
"""

from __future__ import annotations

import json

from blaze_ai.types import Choice, FinishReason, TextResult, Usage

TEXT_KIND = "text"
"""The entry kind of a chat or completion answer (:class:`~blaze_ai.types.TextResult`)."""


def encode_text_result(result: TextResult) -> bytes:
    """``{"choices": [[index, text, finish_reason], ...], "usage": [prompt, completion]}``."""
    body = {
        "choices": [[c.index, c.text, c.finish_reason.value] for c in result.choices],
        "usage": [result.usage.prompt_tokens, result.usage.completion_tokens],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def decode_text_result(payload: bytes) -> TextResult:
    """The inverse of :func:`encode_text_result`.

    Raises:
        ValueError: ``payload`` is not an encoded text result.
    """
    try:
        body = json.loads(payload)
        choices = tuple(
            Choice(int(index), str(text), FinishReason(reason))
            for index, text, reason in body["choices"]
        )
        prompt_tokens, completion_tokens = body["usage"]
        return TextResult(choices, Usage(int(prompt_tokens), int(completion_tokens)))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an encoded text result: {exc}") from None
