"""``/openapi.json`` as an interface: what client generators read must be valid and true.

The document is checked with ``openapi-spec-validator`` and by walking it (every ``$ref``
resolves inside it, no 422, OpenAI errors everywhere), and real answers of the tiny-model app
are validated against the schemas it documents for them (issue 11: the bodies carried their own
``$defs``, so 6 references pointed nowhere).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.api.sse import sse_payloads

ERROR_REF = "#/components/schemas/ErrorResponse"
JSON = "application/json"
MESSAGES = [{"role": "user", "content": "hi"}]
IMAGE = {"model": "digits", "prompt": "a handwritten digit 3", "size": "16x16", "steps": 2}

Document = dict[str, Any]


@pytest.fixture
async def document(http: httpx.AsyncClient) -> Document:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    body: Document = response.json()
    return body


def refs(node: Any, path: str = "#") -> Iterator[tuple[str, str]]:
    """Every ``(where, $ref)`` under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield path, value
            else:
                yield from refs(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from refs(value, f"{path}/{index}")


def resolve(document: Document, pointer: str) -> Any:
    """The node a local JSON pointer (``#/components/schemas/X``) names (KeyError if none)."""
    assert pointer.startswith("#/"), pointer
    node: Any = document
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations(document: Document) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def validator_for(document: Document, pointer: str) -> jsonschema.Draft202012Validator:
    """A JSON Schema validator of the documented schema at ``pointer`` (refs resolved in the
    document)."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:blaze:openapi", resource)
    schema = {"$ref": f"urn:blaze:openapi{pointer}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def escape(part: str) -> str:
    """A JSON pointer segment (RFC 6901)."""
    return part.replace("~", "~0").replace("/", "~1")


def response_schema(document: Document, path: str, status: int, media: str) -> str:
    """The pointer of the schema that ``path``'s operation (its only one) documents for a
    ``status`` answer of type ``media``."""
    (method, operation), *others = document["paths"][path].items()
    assert not others, path
    assert media in operation["responses"][str(status)]["content"], (path, status, media)
    return f"#/paths/{escape(path)}/{method}/responses/{status}/content/{escape(media)}/schema"


def test_document_is_valid_openapi_3_1(document: Document) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)  # openapi-spec-validator: raises on any violation


def test_every_ref_resolves_inside_the_document(document: Document) -> None:
    found = list(refs(document))
    assert len(found) > 50
    unresolved = []
    for where, pointer in found:
        try:
            resolve(document, pointer)
        except (KeyError, AssertionError):
            unresolved.append(f"{where}: {pointer}")
    assert not unresolved, unresolved
    assert "$defs" not in str(document), "a schema carries its own $defs"


def test_no_operation_documents_a_422(document: Document) -> None:
    for method, path, operation in operations(document):
        assert "422" not in operation["responses"], (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_every_success_has_a_schema_and_every_error_is_the_openai_error(
    document: Document,
) -> None:
    for method, path, operation in operations(document):
        statuses = operation["responses"]
        successes = [s for s in statuses if s.startswith("2")]
        assert successes, (method, path)
        for status in successes:
            if status == "204":  # no content
                assert "content" not in statuses[status], (method, path)
                continue
            for media in statuses[status]["content"].values():
                assert media.get("schema"), (method, path, status)
        for status, response in statuses.items():
            if int(status) < 400 or path == "/ready":
                continue
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": ERROR_REF}, (method, path, status)


def test_model_routes_document_their_errors_and_streams(document: Document) -> None:
    errors = {"400", "401", "403", "404", "413", "429", "500", "503", "504"}
    for path in ("/v1/chat/completions", "/v1/completions"):
        responses = document["paths"][path]["post"]["responses"]
        assert errors <= set(responses), path
        assert "text/event-stream" in responses["200"]["content"], path
        assert "Retry-After" in responses["429"]["headers"]
    image_errors = set(document["paths"]["/v1/images/generations"]["post"]["responses"])
    assert {"400", "404", "413", "429", "503"} <= image_errors
    assert "503" in document["paths"]["/ready"]["get"]["responses"]


def test_bodies_are_components_with_truthful_bounds(document: Document) -> None:
    schemas = document["components"]["schemas"]
    images = schemas["ImageGenerationRequest"]["properties"]
    assert images["n"]["maximum"] == 10
    assert images["seed"]["anyOf"][0]["maximum"] == 2**63 - 10  # seed + n - 1 fits in 64 bits
    assert "pattern" in images["size"] and "enum" in images["scheduler"]["anyOf"][0]
    chat = schemas["ChatCompletionRequest"]["properties"]
    assert chat["seed"]["anyOf"][0]["maximum"] == 2**63 - 1  # an integer, not 2**63 as a float
    assert chat["stop"]["anyOf"][1]["maxItems"] == 16
    prompt = schemas["CompletionRequestBody"]["properties"]["prompt"]["anyOf"]
    assert prompt[1]["minItems"] == 1 and prompt[1]["maxItems"] == 64


async def test_answers_match_the_documented_schemas(
    http: httpx.AsyncClient, document: Document
) -> None:
    """Real answers of each route, validated against what the document says of them."""
    chat = {"model": "tiny", "messages": MESSAGES, "max_tokens": 3}
    completion = {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 2}
    image = await http.post("/v1/images/generations", json=IMAGE)
    image_path = httpx.URL(image.json()["data"][0]["url"]).path
    checks: list[tuple[str, int, str, httpx.Response]] = [
        ("/v1/chat/completions", 200, JSON, await http.post("/v1/chat/completions", json=chat)),
        ("/v1/chat/completions", 400, JSON, await http.post("/v1/chat/completions", json={**chat, "n": 0})),
        ("/v1/chat/completions", 404, JSON, await http.post("/v1/chat/completions", json={**chat, "model": "nope"})),
        ("/v1/completions", 200, JSON, await http.post("/v1/completions", json=completion)),
        ("/v1/images/generations", 200, JSON, image),
        ("/v1/images/generations", 400, JSON, await http.post("/v1/images/generations", json={**IMAGE, "prompt": "a cat"})),
        ("/v1/files/images/{image_id}", 200, "image/png", await http.get(image_path)),
        ("/v1/files/images/{image_id}", 404, JSON, await http.get("/v1/files/images/gone")),
        ("/v1/models", 200, JSON, await http.get("/v1/models")),
        ("/v1/models/{model_id}", 200, JSON, await http.get("/v1/models/tiny")),
        ("/v1/models/{model_id}", 404, JSON, await http.get("/v1/models/nope")),
        ("/health", 200, JSON, await http.get("/health")),
        ("/ready", 200, JSON, await http.get("/ready")),
        ("/admin/deployments", 200, JSON, await http.get("/admin/deployments")),
        ("/admin/cache", 200, JSON, await http.get("/admin/cache")),
        ("/admin/cache/clear", 200, JSON, await http.post("/admin/cache/clear", json={"model": "digits"})),
        ("/admin/cache/clear", 404, JSON, await http.post("/admin/cache/clear", json={"model": "nope"})),
    ]  # fmt: skip
    for path, status, media, response in checks:
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith(media), path
        pointer = response_schema(document, path, status, media)
        if media == JSON:
            validator_for(document, pointer).validate(response.json())


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "tiny", "messages": MESSAGES, "max_tokens": 3, "n": 2}),
        ("/v1/completions", {"model": "tiny", "prompt": ["a", "b"], "max_tokens": 2, "echo": True}),
    ],
)
@pytest.mark.parametrize("include_usage", [False, True])
async def test_stream_events_match_the_documented_event_schema(
    http: httpx.AsyncClient,
    document: Document,
    path: str,
    body: dict[str, Any],
    include_usage: bool,
) -> None:
    body = {**body, "stream": True, "stream_options": {"include_usage": include_usage}}
    events = await sse_payloads(http, path, body)
    event_schema = resolve(document, response_schema(document, path, 200, "text/event-stream"))
    json_branch = event_schema["properties"]["data"]["anyOf"][0]
    chunk = validator_for(document, json_branch["contentSchema"]["anyOf"][0]["$ref"])
    assert events[-1] == "[DONE]"
    assert not chunk.is_valid({**events[0], "undocumented": 1})
    for event in events[:-1]:
        assert isinstance(event, dict)
        chunk.validate(event)
