"""Map every error to OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``.

Client mistakes are 4xx (bad JSON and schema violations are 400, never FastAPI's 422); only a
bug in Blaze answers 500, and then without a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path
from starlette.types import Scope

from blaze_ai.errors import BlazeError, InvalidRequestError

logger = logging.getLogger(__name__)

_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none", "dict", "list"})


def error_response(error: BlazeError) -> JSONResponse:
    """The JSON response of ``error``, with its ``headers`` (``x-ratelimit-*``) and
    ``Retry-After`` when it has one."""
    headers = dict(error.headers)
    retry_after = error.retry_after_header()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return JSONResponse(error.to_dict(), status_code=error.status_code, headers=headers)


def note_error(scope: Scope, error: BlazeError) -> None:
    """Note ``error`` on the request: its ``error_type`` for the access line and the usage
    record, and the error itself on the request's metrics record (when it has one)."""
    state = scope.setdefault("state", {})
    state.setdefault("log", {})["error_type"] = error.error_type
    record = state.get("record")
    if record is not None:
        record.fail(error)


def validation_error(errors: Sequence[Any]) -> InvalidRequestError:
    """An :class:`InvalidRequestError` naming the first invalid field of a pydantic error list.

    When the field is a union (``stop``: a string or a list), the error of the branch whose
    type the value has is the one reported (``stop[0]: String should have at least 1
    character``, not ``stop: Input should be a valid string``).
    """
    if not errors:
        return InvalidRequestError("invalid request body")
    first = _most_specific(errors)
    loc = [part for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return InvalidRequestError("the request body is not valid JSON")
    param = format_param(loc) or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    return InvalidRequestError(message, param=param)


def _most_specific(errors: Sequence[Any]) -> Any:
    """The first error about the first error's field that is not a type mismatch, if any."""
    field = _field(errors[0])
    for error in errors:
        if _field(error) != field:
            break
        if not str(error.get("type", "")).endswith("_type"):
            return error
    return errors[0]


def format_param(loc: Sequence[Any]) -> str:
    """``["messages", 0, "role"]`` -> ``"messages[0].role"``; union branch names are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _is_union_tag(part):
            continue  # a union branch such as 'str' or 'list[TextContentPart]'
        else:
            out += f".{part}" if out else part
    return out


def _field(error: Any) -> Any:
    """The top-level field an error is about (FastAPI's ``body`` prefix left out)."""
    loc = [part for part in error.get("loc", ()) if part != "body"]
    return loc[0] if loc else None


def _is_union_tag(part: str) -> bool:
    return part in _UNION_TAGS or "[" in part or part.startswith("constrained-")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods of every route of ``app`` whose path matches ``path`` (its ``Allow``).

    Starlette's 405 names only the methods of the first route that matched the path; a path
    served by one route per method (``GET`` and ``POST /admin/keys``) needs them all.
    """
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        regex, _, _ = compile_path(route.path or "")
        if regex.match(path):
            methods |= set(route.methods or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into an OpenAI error response."""

    @app.exception_handler(BlazeError)
    async def _blaze(request: Request, exc: BlazeError) -> JSONResponse:
        note_error(request.scope, exc)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        error = validation_error(exc.errors())
        note_error(request.scope, error)
        return error_response(error)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = InvalidRequestError(str(exc.detail))
        response = JSONResponse(error.to_dict(), status_code=exc.status_code)
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:  # every method of the path, not only the first route's
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled_error", extra={"path": request.url.path})
        body = BlazeError("internal server error").to_dict()
        return JSONResponse(body, status_code=500)
