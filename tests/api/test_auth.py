"""Issue 12: every route outside the public allowlist needs a key; admin routes the admin key;
a key only its models. Errors in OpenAI's shape, each cause its own 401 message; the secret in
no log, listing or error.

The route walk builds its list from ``app.routes``: a route added later without being
classified in ``RIGHTS`` fails the test, and one that answers without a key fails it too.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from blaze_ai.api.auth import PUBLIC_PATHS, PUBLIC_PREFIXES
from tests.api.conftest import asgi_client
from tests.api.keyed import (
    admin,
    keyed_app,
    keyed_client,
    keyed_settings,
    new_key,
    openai_client,
)

RIGHTS: dict[tuple[str, str], str] = {
    ("POST", "/v1/chat/completions"): "model",
    ("POST", "/v1/completions"): "model",
    ("POST", "/v1/images/generations"): "model",
    ("GET", "/v1/models/{model_id:path}"): "model",
    ("GET", "/v1/models"): "key",  # any key; the list is filtered to the key's models
    ("GET", "/openapi.json"): "key",
    ("GET", "/docs"): "key",
    ("HEAD", "/docs"): "key",
    ("GET", "/docs/oauth2-redirect"): "key",
    ("HEAD", "/docs/oauth2-redirect"): "key",
    ("GET", "/redoc"): "key",
    ("HEAD", "/redoc"): "key",
    ("HEAD", "/openapi.json"): "key",
    ("GET", "/metrics"): "admin",  # on a non-loopback address without metrics.public
}
"""What each non-public route needs beyond a valid key: ``admin`` (every ``/admin`` route,
implied by the prefix), ``model`` (a key allowed the model), ``key`` (nothing more)."""

BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"model": "tiny", "prompt": "hi"},
    "/v1/images/generations": {"model": "digits", "prompt": "3"},
}


@pytest.fixture(scope="module")
async def app(
    tiny_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    settings = keyed_settings(tiny_config, tmp_path_factory.mktemp("auth"))
    # as on a network address (served in this process all the same): /metrics needs the key
    server = settings.server.model_copy(update={"host": "0.0.0.0"})
    async with keyed_app(settings.model_copy(update={"server": server})) as started:
        yield started


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the app, included routers' routes too, but the public ones."""
    found = []
    for route in iter_route_contexts(app.routes):
        path = route.path
        if path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIXES):
            found.extend((method, path) for method in sorted(route.methods or ()))
    return found


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: "tiny" if m.group(1) == "model_id" else "x", path)


def _right(method: str, path: str) -> str:
    if path.startswith("/admin") or RIGHTS.get((method, path)) == "admin":
        return "admin"
    assert (method, path) in RIGHTS, f"{method} {path}: a new route; classify it in RIGHTS"
    return RIGHTS[(method, path)]


def _is_openai_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


async def test_every_route_needs_a_key_and_its_right(app: FastAPI) -> None:
    routes = _routes(app)
    assert ("POST", "/admin/keys") in routes and ("POST", "/v1/chat/completions") in routes
    user = await new_key(app, "walkers", models=["none-of-these-*"])
    async with asgi_client(app) as anonymous, keyed_client(app, user["key"]) as keyed:
        for method, path in routes:
            right = _right(method, path)
            body = BODIES.get(path)
            response = await anonymous.request(method, _url(path), json=body)
            if method == "HEAD":  # the status only: a HEAD answer has no body
                assert response.status_code == 401, path
                continue
            error = _is_openai_error(response, 401)
            assert error["code"] == "invalid_api_key"
            response = await keyed.request(method, _url(path), json=body)
            if right == "key":
                assert response.status_code in (200, 404), (method, path, response.text)
                continue
            error = _is_openai_error(response, 403)
            assert error["type"] == "permission_error"
            if right == "model":
                assert error["param"] == "model"


async def test_public_paths_answer_without_a_key(app: FastAPI) -> None:
    key = await new_key(app, "painters")
    async with asgi_client(app) as anonymous, keyed_client(app, key["key"]) as keyed:
        assert (await anonymous.get("/health")).status_code == 200
        assert (await anonymous.get("/ready")).status_code == 200
        made = await keyed.post("/v1/images/generations", json={**BODIES["/v1/images/generations"]})
        url = made.json()["data"][0]["url"]
        assert url.split("/v1/files/images/")[0] == "http://blaze"
        image = await anonymous.get(url)  # its URL is its secret, as OpenAI's signed URLs
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert (await anonymous.get("/v1/files/images/guess")).status_code == 404


async def test_a_key_works_with_the_openai_client_and_lists_its_models(app: FastAPI) -> None:
    key = await new_key(app, "readers", models=["tiny"], name="reader")
    assert key["key"].startswith("sk-blz-") and key["key_id"] == key["key"][:15]
    async with openai_client(app, key["key"]) as client:
        answer = await client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert answer.choices[0].message.role == "assistant"
        assert [m.id for m in (await client.models.list()).data] == ["tiny"]
        # an alias resolves to an allowed model: "default" is the tiny model's alias
        await client.completions.create(model="default", prompt="hi", max_tokens=2)


async def test_each_refusal_has_its_own_401_message(app: FastAPI) -> None:
    live = await new_key(app, "refused")
    revoked = await new_key(app, "refused")
    expired = await new_key(app, "refused", expires_at=time.time() - 1)
    disabled = await new_key(app, "refused")
    blocked = await new_key(app, "blocked-team")
    async with admin(app) as client:
        assert (await client.delete(f"/admin/keys/{revoked['key_id']}")).status_code == 200
        patch = await client.patch(f"/admin/keys/{disabled['key_id']}", json={"disabled": True})
        assert patch.status_code == 200
        team = await client.patch("/admin/teams/blocked-team", json={"disabled": True})
        assert team.status_code == 200
    wrong = live["key"][:15] + "A" * (len(live["key"]) - 15)
    cases = {
        "": "Missing API key",
        "Bearer": "Missing API key",
        "Bearer    ": "Missing API key",
        "Basic dXNlcjpwYXNz": "Malformed Authorization header",
        f"Bearer {live['key']} extra": "Malformed API key",
        "Bearer sk-blz-' OR 1=1 --": "Malformed API key",
        "Bearer sk-other-install-0123456789abcdef": "Incorrect API key provided",
        f"Bearer {wrong}": "Incorrect API key provided",
        f"Bearer {revoked['key']}": "has been revoked",
        f"Bearer {expired['key']}": "has expired",
        f"Bearer {disabled['key']}": "is disabled",
        f"Bearer {blocked['key']}": "team of API key",
        "Bearer " + "k" * 10_000: "too long",
    }
    async with asgi_client(app) as client:
        for header, message in cases.items():
            response = await client.get("/v1/models", headers={"Authorization": header})
            error = _is_openai_error(response, 401)
            assert message in error["message"], (header[:40], error)
            assert error["code"] == "invalid_api_key" and error["type"] == "authentication_error"
        ok = await client.get("/v1/models", headers={"api-key": live["key"]})  # Azure clients
        assert ok.status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_the_admin_key_manages_keys_and_teams(app: FastAPI) -> None:
    async with admin(app) as client:
        team = await client.post("/admin/teams", json={"name": "ops", "rpm": 100})
        assert team.status_code == 201 and team.json()["rpm"] == 100
        assert (await client.post("/admin/teams", json={"name": "ops"})).status_code == 409
        slash = await client.post("/admin/keys", json={"team": "a/b"})  # not a path segment
        assert _is_openai_error(slash, 400)["param"] == "team"
        created = (await client.post("/admin/keys", json={"team": "ops", "tpm": 500})).json()
        listed = (await client.get("/admin/keys", params={"team": "ops"})).json()["data"]
        assert [k["key_id"] for k in listed] == [created["key_id"]]
        assert all("key" not in k and created["key"] not in str(k) for k in listed)
        changed = await client.patch(f"/admin/keys/{created['key_id']}", json={"rpm": 7})
        assert changed.json()["rpm"] == 7 and changed.json()["tpm"] == 500
        typo = await client.patch(f"/admin/keys/{created['key_id']}", json={"rmp": 7})
        assert _is_openai_error(typo, 400)["param"] == "rmp"
        missing = await client.get("/admin/keys/sk-blz-00000000")
        assert _is_openai_error(missing, 404)["code"] == "not_found"
        shown = (await client.get(f"/admin/keys/{created['key_id']}")).json()
        assert shown["team"] == "ops" and "key" not in shown


async def test_the_secret_is_in_no_log_line(
    app: FastAPI, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    key = await new_key(app, "quiet")
    secret = key["key"]
    async with keyed_client(app, secret) as client:
        await client.post("/v1/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 1})
        await client.get("/v1/models")
    async with keyed_client(app, secret[:-1] + "Z") as client:
        await client.get("/v1/models")
    out = capsys.readouterr()
    logged = out.out + out.err + "\n".join(str(vars(r)) for r in caplog.records)
    assert key["key_id"] in logged  # the access lines name the key by its public id
    assert secret not in logged and secret[15:] not in logged
