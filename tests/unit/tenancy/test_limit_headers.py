"""OpenAI's ``x-ratelimit-*`` headers: Go durations for resets, the tightest window wins."""

from __future__ import annotations

import pytest

from blaze_ai.tenancy.limit_headers import WindowState, format_reset, rate_limit_headers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (-1.0, "0s"),
        (0.0123, "12ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (8.64, "8.64s"),
        (59.5, "59.5s"),
        (60.0, "1m0s"),
        (86.4, "1m26.4s"),
        (360.0, "6m0s"),
        (3600.0, "1h0m0s"),
        (3725.25, "1h2m5.25s"),
    ],
)
def test_resets_are_go_durations(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_the_tightest_window_of_each_kind_is_sent() -> None:
    key, team = WindowState(100, 10, 30.0), WindowState(20, 15, 12.5)
    headers = rate_limit_headers([key, team], [WindowState(1000, 1200, 0.5)])
    assert headers == {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "5",
        "x-ratelimit-reset-requests": "12.5s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "500ms",
    }
    assert rate_limit_headers([], []) == {}
    assert set(rate_limit_headers([key], [])) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
