"""One structured access line per request, with tokens and without the prompt text."""

from __future__ import annotations

import time

import httpx

from blaze_ai.devtools.server import BlazeServer


def log_once_logged(server: BlazeServer, request_id: str, timeout_s: float = 5.0) -> str:
    """The server log once it holds the access line of ``request_id`` (written just after the
    response is sent), or after ``timeout_s`` seconds."""
    deadline = time.monotonic() + timeout_s
    while f"request_id={request_id}" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return log


def test_access_line_has_fields_and_no_prompt(http: httpx.Client, tiny_server: BlazeServer) -> None:
    secret = "zebra-unicorn-7731"
    response = http.post(
        "/v1/chat/completions",
        json={"model": "tiny", "messages": [{"role": "user", "content": secret}], "max_tokens": 3},
        headers={"X-Request-ID": "log-check-1"},
    )
    assert response.status_code == 200
    log = log_once_logged(tiny_server, "log-check-1")
    assert secret not in log
    lines = [line for line in log.splitlines() if "request_id=log-check-1" in line]
    assert len(lines) == 1
    line = lines[0]
    for field in (
        "status=200",
        "model=tiny",
        "completion_tokens=3",
        "prompt_tokens=",
        "latency_ms=",
    ):
        assert field in line


def test_control_characters_cannot_forge_log_lines(
    http: httpx.Client, tiny_server: BlazeServer
) -> None:
    """Found by a break-it review: a raw CR or NUL from the URL reached the access log."""
    http.get("/nope%0D%0Aevent=forged%00", headers={"X-Request-ID": "log-check-2"})
    lines = log_once_logged(tiny_server, "log-check-2").splitlines()
    line = next(text for text in lines if "request_id=log-check-2" in text)
    assert "\r" not in line and "\x00" not in line
    assert "\\r" in line
