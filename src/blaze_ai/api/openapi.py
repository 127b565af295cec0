"""The OpenAPI 3.1 document (``/openapi.json``): FastAPI's, finished, and the route helpers.

FastAPI writes the document from the routes. :class:`DocumentedApp` finishes it in three steps:

1. Request bodies and stream chunks are written into ``components.schemas`` by pydantic
   itself: the bodies of the :class:`~blaze_ai.api.direct_route.DirectRoute` endpoints
   (FastAPI does not parse them), the stream chunks (FastAPI attaches a model only to the
   route's own media type), and bodies FastAPI did document but whose integer bounds its
   ``OpenAPI`` model turned into floats (``2**63 - 1`` became ``2**63``). Their ``$ref``
   point into ``components``, so every reference of the document resolves.
2. FastAPI's ``422`` answer and its ``HTTPValidationError`` schema go: Blaze answers every
   invalid request ``400`` with the OpenAI error body (``api/errors.py``).
3. Properties get ``examples`` of this server: the ``model`` fields list the served models, so
   a client, Swagger UI or a fuzzer (schemathesis) can write a body this server accepts.

Routes document their answers with :func:`error_responses` (the OpenAI error body per status)
and :func:`event_stream` (the ``text/event-stream`` content of a streamed answer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from blaze_ai.api.schemas.errors import ErrorResponse

REF_PREFIX = "#/components/schemas/"
JsonSchemaMode = Literal["validation", "serialization"]

ERROR_DESCRIPTIONS: Mapping[int, str] = {
    400: "Invalid request: the body is not JSON, or a field is missing, of the wrong type, out "
    "of range, or asks what this model cannot do (`param` names the field).",
    401: "No API key, or one that is unknown, malformed, revoked, expired or disabled, or of a "
    "disabled team (`code`: `invalid_api_key`); or the model's upstream refused the "
    "credentials Blaze sent it.",
    403: "The API key may not use this model (`param`: `model`); or the model's upstream does "
    "not allow this request.",
    404: "No served model has this name or alias (`code`: `model_not_found`).",
    413: "The request body is larger than `server.max_body_bytes` (`code`: `request_too_large`).",
    429: "Too many requests: Blaze's queue is full (`code`: `server_overloaded`), the API key "
    "or its team is over its rpm, tpm or max_parallel (`code`: `rate_limit_exceeded`, with "
    "the `x-ratelimit-*` headers), or the upstream's rate limit was reached. Retry after "
    "`Retry-After` seconds.",
    500: "An engine failed while generating (the engine itself is restarted if it died).",
    503: "No deployment of the model can serve now: loading, failed, or unreachable.",
    504: "The request's deadline passed before the engine answered (`code`: `timeout`).",
}
"""What each error status means on the model routes; a route may describe one its own way."""

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (sent when Blaze knows them).",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(
    *statuses: int, described: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses`` for ``statuses``, each with the OpenAI error body.

    Args:
        statuses: HTTP statuses the route answers with an :class:`ErrorResponse`.
        described: descriptions that replace :data:`ERROR_DESCRIPTIONS` for this route (and
            add statuses of their own).
    """
    described = described or {}
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, *described}):
        response: dict[str, Any] = {
            "model": ErrorResponse,
            "description": described.get(status, ERROR_DESCRIPTIONS.get(status, "Error")),
        }
        if status in (429, 503):
            response["headers"] = RETRY_AFTER
        out[status] = response
    return out


def ref(model: type[BaseModel]) -> dict[str, str]:
    """``{"$ref": ...}`` to ``model`` in ``components.schemas``."""
    return {"$ref": REF_PREFIX + model.__name__}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the required JSON body of a route whose
    endpoint parses it itself (list ``model`` in :class:`DocumentedApp`'s ``schemas``)."""
    content = {"application/json": {"schema": ref(model)}}
    return {"requestBody": {"required": True, "content": content}}


def event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """The ``text/event-stream`` media type of a streamed answer whose events carry ``chunk``.

    Described one event at a time, as OpenAPI 3.2 does with ``itemSchema``; before 3.2 the
    ``schema`` of an event stream reads as one event's (schemathesis does so). Each event's
    ``data`` is a ``chunk`` as JSON, or an OpenAI error object as JSON (the last event of a
    stream that failed after it started), or ``[DONE]`` (the last event of a stream that
    ended well). List ``chunk`` in :class:`DocumentedApp`'s ``schemas``.
    """
    json_data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"anyOf": [ref(chunk), ref(ErrorResponse)]},
    }
    event = {
        "type": "object",
        "description": "One server-sent event: `data: <JSON>` or `data: [DONE]`.",
        "required": ["data"],
        "properties": {"data": {"anyOf": [json_data, {"const": "[DONE]"}]}},
    }
    return {"schema": event}


class DocumentedApp(FastAPI):
    """A FastAPI app whose document is finished as the module docstring says.

    Args:
        schemas: models whose schema pydantic writes into ``components.schemas``, each with
            its mode (``validation`` for request bodies, ``serialization`` for answers).
        examples: JSON Schema ``examples`` per component schema and property
            (``{"ChatCompletionRequest": {"model": ["smollm2"]}}``); empty lists are skipped.
        public_paths: with auth on, the paths served without a key; every other operation
            then declares the bearer API key (``components.securitySchemes.apiKey``). None:
            auth is off, no security is declared.
        **kwargs: :class:`FastAPI`'s.
    """

    def __init__(
        self,
        *,
        schemas: Sequence[tuple[type[BaseModel], JsonSchemaMode]] = (),
        examples: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
        public_paths: Callable[[str], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._extra_schemas = tuple(schemas)
        self._examples = examples or {}
        self._public = public_paths
        self._finished: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        """The document (generated once per set of routes, as FastAPI does, then finished)."""
        document = super().openapi()
        if document is self._finished:
            return document
        components = document.setdefault("components", {}).setdefault("schemas", {})
        _add_schemas(components, self._extra_schemas)
        _drop_validation_errors(document["paths"].values(), components)
        _add_examples(components, self._examples)
        document["components"]["schemas"] = dict(sorted(components.items()))
        if self._public is not None:
            _add_security(document, self._public)
        self._finished = document
        return document


def _add_schemas(
    components: dict[str, Any], models: Sequence[tuple[type[BaseModel], JsonSchemaMode]]
) -> None:
    """Write ``models`` and the models they use into ``components``, by class name as FastAPI
    names them (replacing FastAPI's copy of the same model)."""
    if models:
        _, top = models_json_schema(models, ref_template=REF_PREFIX + "{model}")
        components.update(top.get("$defs", {}))


def _add_security(document: dict[str, Any], public: Callable[[str], bool]) -> None:
    """Declare the bearer API key on every operation but the public ones."""
    document["components"]["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "A Blaze API key (`sk-blz-...`), or the admin key for `/admin/*`.",
        }
    }
    document["security"] = [{"apiKey": []}]
    for path, operations in document["paths"].items():
        if public(path):
            for operation in operations.values():
                operation["security"] = []


def _drop_validation_errors(paths: Iterable[dict[str, Any]], components: dict[str, Any]) -> None:
    for operations in paths:
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)


def _add_examples(
    components: dict[str, Any], examples: Mapping[str, Mapping[str, Sequence[Any]]]
) -> None:
    for schema, properties in examples.items():
        for name, values in properties.items():
            if values:
                components[schema]["properties"][name]["examples"] = list(values)
