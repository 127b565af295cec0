"""OpenAI's ``x-ratelimit-*`` response headers, from the state of the rate-limit windows.

OpenAI sends, for the limit that is tightest, ``x-ratelimit-limit-requests``,
``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` and the same three for
``tokens``; a reset is a Go duration (``time.Duration.String``): ``"12ms"``, ``"59.5s"``,
``"6m0s"``, ``"1h0m0s"``, the form the official clients parse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowState:
    """One counter of one subject after a request was counted.

    Attributes:
        limit: the most the window allows (requests or tokens).
        count: what the window holds now (this request included when it was admitted).
        reset_s: seconds until the window starts afresh.
    """

    limit: int
    count: int
    reset_s: float

    @property
    def remaining(self) -> int:
        """What the window still allows (never below 0)."""
        return max(0, self.limit - self.count)


def format_reset(seconds: float) -> str:
    """``seconds`` as a Go duration, to the millisecond: ``0.0123`` -> ``"12ms"``, ``59.5`` ->
    ``"59.5s"``, ``360`` -> ``"6m0s"``, ``3600`` -> ``"1h0m0s"``; ``"0s"`` at or below 0."""
    total_ms = round(seconds * 1000)
    if total_ms <= 0:
        return "0s"
    if total_ms < 1000:
        return f"{total_ms}ms"
    hours, rest_ms = divmod(total_ms, 3_600_000)
    minutes, sec_ms = divmod(rest_ms, 60_000)
    sec = f"{sec_ms // 1000}" if sec_ms % 1000 == 0 else f"{sec_ms / 1000:.3f}".rstrip("0")
    if hours:
        return f"{hours}h{minutes}m{sec}s"
    if minutes:
        return f"{minutes}m{sec}s"
    return f"{sec}s"


def tightest(states: Sequence[WindowState]) -> WindowState | None:
    """The state with the fewest remaining (the first of equals), or None when empty."""
    if not states:
        return None
    best = states[0]
    for state in states[1:]:
        if state.remaining < best.remaining:
            best = state
    return best


def rate_limit_headers(
    requests: Sequence[WindowState], tokens: Sequence[WindowState]
) -> dict[str, str]:
    """The ``x-ratelimit-*`` headers of the tightest request window and the tightest token
    window (key's or team's); the requests trio only when ``requests`` is not empty, the tokens
    trio only when ``tokens`` is not empty."""
    headers: dict[str, str] = {}
    req = tightest(requests)
    if req is not None:
        headers["x-ratelimit-limit-requests"] = str(req.limit)
        headers["x-ratelimit-remaining-requests"] = str(req.remaining)
        headers["x-ratelimit-reset-requests"] = format_reset(req.reset_s)
    tok = tightest(tokens)
    if tok is not None:
        headers["x-ratelimit-limit-tokens"] = str(tok.limit)
        headers["x-ratelimit-remaining-tokens"] = str(tok.remaining)
        headers["x-ratelimit-reset-tokens"] = format_reset(tok.reset_s)
    return headers
