"""The exception tree: statuses, OpenAI types, retryability, and the HTTP body."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from blaze_ai import errors
from blaze_ai.api.errors import (
    error_response,
    format_param,
    install_error_handlers,
    validation_error,
)


@pytest.mark.parametrize(
    ("cls", "status", "retryable"),
    [
        (errors.InvalidRequestError, 400, False),
        (errors.ContextLengthExceededError, 400, False),
        (errors.AuthenticationError, 401, False),
        (errors.PermissionDeniedError, 403, False),
        (errors.ModelNotFoundError, 404, False),
        (errors.NotFoundError, 404, False),
        (errors.ConflictError, 409, False),
        (errors.PayloadTooLargeError, 413, False),
        (errors.RequestTimeoutError, 408, False),
        (errors.HeaderTooLargeError, 431, False),
        (errors.RateLimitError, 429, False),
        (errors.BackPressureError, 429, False),
        (errors.NoHealthyDeploymentError, 503, False),
        (errors.ConnectionLimitError, 503, False),
        (errors.EngineTimeoutError, 504, True),
        (errors.EngineUnavailableError, 503, True),
        (errors.EngineGenerationError, 500, True),
        (errors.EngineDeadError, 500, True),
    ],
)
def test_status_and_retryable(cls: type[errors.BlazeError], status: int, retryable: bool) -> None:
    error = cls("boom")
    assert error.status_code == status
    assert error.retryable is retryable
    assert issubclass(cls, errors.ClientError) == (
        400 <= status < 500 and cls is not errors.BackPressureError
    )


def test_body_shape_and_retry_after() -> None:
    response = error_response(errors.BackPressureError("busy", retry_after_s=2.2))
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert errors.ModelNotFoundError("x", param="model").to_dict() == {
        "error": {
            "message": "x",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }


def test_param_paths() -> None:
    assert format_param(["messages", 0, "role"]) == "messages[0].role"
    assert format_param(["messages", 0, "content", "str"]) == "messages[0].content"
    assert format_param(["stop", "list[str]", 3]) == "stop[3]"
    assert format_param(["stream_options", "include_usage"]) == "stream_options.include_usage"
    error = validation_error(
        [{"loc": ("body", "n"), "msg": "too small", "type": "greater_than_equal"}]
    )
    assert error.param == "n" and error.status_code == 400


def test_upstream_rate_limit_is_a_retryable_provider_429() -> None:
    """``shared/cases/upstream-429-status.md``: not a client error, but a 429 to the client."""
    error = errors.UpstreamRateLimitError("slow down", retry_after_s=2)
    assert (error.status_code, error.error_type, error.retryable) == (429, "rate_limit_error", True)
    assert isinstance(error, errors.EngineError) and not isinstance(error, errors.ClientError)
    assert error_response(error).headers["retry-after"] == "2"


def test_upstream_stream_error_keeps_the_upstream_type_and_code() -> None:
    """``shared/cases/stream-fallback-before-content.md``."""
    error = errors.UpstreamStreamError("quota", upstream_type="insufficient_quota", code="quota")
    assert error.to_dict()["error"] == {
        "message": "quota",
        "type": "insufficient_quota",
        "param": None,
        "code": "quota",
    }
    assert error.retryable  # before any content it falls back


async def test_a_rate_limit_error_sends_its_headers_and_retry_after() -> None:
    app = FastAPI()
    install_error_handlers(app)
    headers = {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0"}

    @app.get("/limited")
    async def limited() -> None:
        raise errors.RateLimitError("too many", retry_after_s=2.5, headers=headers)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.headers["x-ratelimit-limit-requests"] == "10"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert errors.BackPressureError("busy").headers == {}  # other errors send none
