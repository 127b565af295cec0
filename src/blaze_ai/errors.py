"""Blaze's one exception tree.

Every error a client can see is a :class:`BlazeError`. Each class knows its HTTP status, its
OpenAI error ``type``, and whether the gateway may retry it on another deployment::

    BlazeError
    ├── ConfigError                      (start-up only; never reaches a client)
    ├── ClientError                      4xx, never retried, never trips a breaker
    │   ├── InvalidRequestError          400 invalid_request_error
    │   ├── ContextLengthExceededError   400 invalid_request_error, code context_length_exceeded
    │   ├── AuthenticationError          401 authentication_error
    │   ├── PermissionDeniedError        403 permission_error
    │   ├── ModelNotFoundError           404 invalid_request_error, code model_not_found
    │   ├── NotFoundError                404 invalid_request_error, code not_found (key, team)
    │   ├── RequestTimeoutError          408 invalid_request_error, code request_timeout
    │   ├── ConflictError                409 invalid_request_error, code conflict
    │   ├── PayloadTooLargeError         413 invalid_request_error
    │   ├── HeaderTooLargeError          431 invalid_request_error, code request_header_too_large
    │   └── RateLimitError               429 rate_limit_error (Retry-After)
    ├── CapacityError
    │   ├── BackPressureError            429 rate_limit_error (Retry-After)
    │   ├── NoHealthyDeploymentError     503 service_unavailable (Retry-After)
    │   ├── ConnectionLimitError         503 service_unavailable (Retry-After)
    │   └── AuthUnavailableError         503 service_unavailable (Retry-After)
    └── EngineError                      5xx
        ├── EngineTimeoutError           504 timeout
        ├── EngineUnavailableError       503 service_unavailable (retryable)
        ├── UpstreamRateLimitError       429 rate_limit_error (Retry-After; retryable elsewhere)
        ├── EngineGenerationError        500 server_error (recoverable)
        │   └── UpstreamStreamError      500, the upstream's own error type and code kept
        └── EngineDeadError              500 server_error (the supervisor restarts the engine)

The HTTP layer turns any of them into ``{"error": {"message", "type", "param", "code"}}``
(see ``api/errors.py``).

Each class also names its **fault domain** and its metric label (``metric_error_type``, the
``error_type`` label of ``blaze_errors_total``): ``caller_*`` for the client's mistakes,
``policy_*`` for auth and limits, ``provider_*`` for engines and upstreams, ``blaze_*`` for
Blaze's own faults, so one label matcher keeps client errors out of an alert.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar, Literal

FaultDomain = Literal["caller", "policy", "provider", "blaze"]
"""Whose fault an error is: the caller's, a policy's (auth, limits), a provider's (an engine
or upstream), or Blaze's own."""


class BlazeError(Exception):
    """Base of every Blaze error.

    Args:
        message: human-readable text sent to the client (never contains secrets).
        param: the request field at fault, in OpenAI's dotted form (``messages[0].role``).
        code: a short machine-readable code (``model_not_found``), or None.
        retry_after_s: seconds the client should wait before retrying, sent as ``Retry-After``.
    """

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    retryable: ClassVar[bool] = False
    default_code: ClassVar[str | None] = None
    fault: ClassVar[FaultDomain] = "blaze"
    metric_error_type: ClassVar[str] = "blaze_internal"
    """The ``error_type`` label of ``blaze_errors_total``: ``<fault>_<what>``, a closed set."""
    headers: Mapping[str, str] = MappingProxyType({})
    """Response headers besides ``Retry-After`` (the ``x-ratelimit-*`` of a
    :class:`RateLimitError`); none by default."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after_s = retry_after_s

    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` value: ``retry_after_s`` rounded up to whole seconds (at least 1),
        or None when the error has no ``retry_after_s``."""
        if self.retry_after_s is None:
            return None
        return str(max(1, math.ceil(self.retry_after_s)))

    def to_dict(self) -> dict[str, Any]:
        """Return the OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class ConfigError(BlazeError):
    """The configuration is invalid; raised at start-up, never at request time."""

    fault: ClassVar[FaultDomain] = "blaze"
    metric_error_type = "blaze_config"


class ClientError(BlazeError):
    """The request is at fault (4xx). Never retried and never counted against a deployment."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_invalid_request"

    status_code = 400
    error_type = "invalid_request_error"


class InvalidRequestError(ClientError):
    """A field is missing, of the wrong type or out of range (400)."""


class ContextLengthExceededError(ClientError):
    """Prompt tokens plus requested completion tokens exceed the model's context window (400)."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_context_length_exceeded"

    default_code = "context_length_exceeded"


class AuthenticationError(ClientError):
    """Missing or invalid API key (401)."""

    fault: ClassVar[FaultDomain] = "policy"
    metric_error_type = "policy_authentication"

    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(ClientError):
    """The key may not use this model or endpoint (403)."""

    fault: ClassVar[FaultDomain] = "policy"
    metric_error_type = "policy_permission_denied"

    status_code = 403
    error_type = "permission_error"


class ModelNotFoundError(ClientError):
    """No served model has this name or alias (404)."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_model_not_found"

    status_code = 404
    default_code = "model_not_found"


class NotFoundError(ClientError):
    """No API key or team has this id or name (404). The message names a key by its public
    ``key_id`` only."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_not_found"

    status_code = 404
    default_code = "not_found"


class RequestTimeoutError(ClientError):
    """The request head or body did not arrive in time (``server.head_timeout_s``,
    ``server.body_read_timeout_s``) (408). Sent by the HTTP server, before the app sees it."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_request_timeout"

    status_code = 408
    default_code = "request_timeout"


class ConflictError(ClientError):
    """The change contradicts what is stored: the team exists already, or a team that still
    has live keys cannot be deleted (409)."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_conflict"

    status_code = 409
    default_code = "conflict"


class PayloadTooLargeError(ClientError):
    """The request body is larger than ``server.max_body_bytes`` (413)."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_payload_too_large"

    status_code = 413
    default_code = "request_too_large"


class HeaderTooLargeError(ClientError):
    """The request head is larger than ``server.max_header_bytes`` (431). Sent by the HTTP
    server, before the app sees it."""

    fault: ClassVar[FaultDomain] = "caller"
    metric_error_type = "caller_header_too_large"

    status_code = 431
    default_code = "request_header_too_large"


class RateLimitError(ClientError):
    """The caller exceeded its rate limit (429, with ``Retry-After``).

    Args:
        message, param, code, retry_after_s: as :class:`BlazeError`.
        headers: OpenAI's ``x-ratelimit-*`` headers of the refusal, sent with the response.
        limit: which limit refused: ``rpm``, ``tpm`` or ``max_parallel`` (the ``limit`` label
            of ``blaze_rate_limited_total``); None when not known.
    """

    fault: ClassVar[FaultDomain] = "policy"
    metric_error_type = "policy_rate_limited"

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        limit: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, retry_after_s=retry_after_s)
        self.limit = limit
        if headers:
            self.headers = MappingProxyType(dict(headers))


class CapacityError(BlazeError):
    """Blaze cannot take the request right now; the client may retry later."""

    fault: ClassVar[FaultDomain] = "blaze"
    metric_error_type = "blaze_capacity"

    status_code = 503
    error_type = "service_unavailable"


class BackPressureError(CapacityError):
    """Every admission slot or engine queue is full (429, with ``Retry-After``)."""

    fault: ClassVar[FaultDomain] = "policy"
    metric_error_type = "policy_backpressure"

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "server_overloaded"


class NoHealthyDeploymentError(CapacityError):
    """No deployment of the model (or of its fallbacks) can serve now (503)."""

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_no_healthy_deployment"

    default_code = "no_healthy_deployment"


class ConnectionLimitError(CapacityError):
    """``server.max_connections`` connections are open already (503, with ``Retry-After``).
    Sent by the HTTP server on the extra connection, before the app sees its request."""

    fault: ClassVar[FaultDomain] = "policy"
    metric_error_type = "policy_connection_limit"

    default_code = "too_many_connections"


class AuthUnavailableError(CapacityError):
    """An API key that this process has not seen could not be checked: the key database
    cannot be read (503, with ``Retry-After``). Keys already known keep being served."""

    fault: ClassVar[FaultDomain] = "blaze"
    metric_error_type = "blaze_auth_unavailable"

    default_code = "auth_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, retry_after_s=1.0)


class EngineError(BlazeError):
    """An engine failed to produce an answer (5xx)."""

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_error"

    status_code = 500
    error_type = "server_error"


class EngineTimeoutError(EngineError):
    """The request's deadline passed before the engine answered (504)."""

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_timeout"

    status_code = 504
    error_type = "timeout"
    retryable = True
    default_code = "timeout"


class EngineUnavailableError(EngineError):
    """The engine is not ready (loading, stopped or unreachable) (503)."""

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_unavailable"

    status_code = 503
    error_type = "service_unavailable"
    retryable = True
    default_code = "engine_unavailable"


class UpstreamRateLimitError(EngineError):
    """A remote upstream answered 429: its rate limit, not the caller's (429, ``Retry-After``).

    Retried on another deployment; the deployment is deferred for ``retry_after_s``. When every
    candidate is rate limited the client gets this 429, so the official clients back off as
    they do for OpenAI's own 429.
    """

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_rate_limited"

    status_code = 429
    error_type = "rate_limit_error"
    retryable = True
    default_code = "rate_limit_exceeded"


class EngineGenerationError(EngineError):
    """One generation failed; the engine itself is still usable (500)."""

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_generation_failed"

    retryable = True


class UpstreamStreamError(EngineGenerationError):
    """An upstream sent an error event inside a stream; its ``type`` and ``code`` are kept.

    Args:
        message: the upstream's message.
        upstream_type: the upstream's error ``type`` (``server_error`` when it sent none).
        code: the upstream's error ``code``.
    """

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_stream_error"

    def __init__(self, message: str, *, upstream_type: str | None, code: str | None) -> None:
        super().__init__(message, code=code)
        self.upstream_type = upstream_type or "server_error"

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error body, with the upstream's ``type``."""
        body = super().to_dict()
        body["error"]["type"] = self.upstream_type
        return body


class EngineDeadError(EngineError):
    """The engine can serve nothing more until it is restarted (500)."""

    fault: ClassVar[FaultDomain] = "provider"
    metric_error_type = "provider_engine_dead"

    retryable = True
