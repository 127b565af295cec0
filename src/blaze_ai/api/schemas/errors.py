"""The OpenAI error body every error answer carries (documented in ``/openapi.json``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ErrorObject(BaseModel):
    """OpenAI's ``error`` object.

    ``type`` is the class of error (``invalid_request_error``, ``rate_limit_error``,
    ``server_error``...); ``param`` names the request field at fault in dotted form
    (``messages[0].role``), or is null; ``code`` is a short machine-readable code
    (``model_not_found``, ``context_length_exceeded``...), or null.
    """

    model_config = ConfigDict(extra="forbid")

    message: str = Field(description="Human-readable text; never contains secrets.")
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """``{"error": {"message", "type", "param", "code"}}``: the body of every 4xx and 5xx."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorObject
