"""Schemathesis against the real document and the real app, in this process (issue 11).

The app serves a chat model on a fake upstream (a real aiohttp server on loopback, in its own
thread) and the embedded ``digits`` image model, with auth on (a SQLite key database in a
temporary folder); every request sends the admin key. Schemathesis reaches it through its ASGI
transport, and runs its examples, coverage and fuzzing phases on every operation of the
document the app serves, with a fixed seed, a few fuzzed examples per operation and every
built-in check. The document lists the served models as ``examples`` of each ``model`` field,
which is what brings the generated bodies to the engines.

The schema is loaded when the module is imported, from the app's own document (which starts
nothing): ``schemathesis.pytest.from_fixture`` fails with pytest 9.2 (``'Function' object has
no attribute '_nodeid'``). Schemathesis' pytest plugin ends an ASGI app's lifespan after each
test; :class:`~tests.api.lifespan_once.LifespanOnce` keeps the app started for the module.

One check is configured, not weakened: ``positive_data_acceptance`` also expects ``400``, for
one reason. A body valid by the document can ask what a particular model cannot do: the digits
model draws one of ten classes and its prompt must name one; a deployment allows at most its
``max_steps``; an image model makes only some sizes; a completion asks for at most 128
sequences in all (prompts x ``n``); a deployment caps ``max_tokens`` (a remote one's
``max_output_tokens``) and the images of a request (``n × steps × pixels``). Blaze refuses those with a 400 naming the field, as the
document says (and as OpenAI does). :func:`valid_data_is_refused_only_for_model_limits` keeps
that honest: a 400 to schema-valid data must name one of those fields of that operation.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web

from blaze_ai.api.app import create_app
from blaze_ai.config import Settings
from blaze_ai.devtools.fake_upstream import FakeUpstream, serve
from blaze_ai.devtools.net import free_port
from blaze_ai.engines.factory import make_engine_factory
from blaze_ai.gateway.build import build_gateway
from blaze_ai.tenancy.service import build_tenancy
from tests.api.lifespan_once import LifespanOnce

CHAT_MODEL = "fake-chat"
IMAGE_MODEL = "digits"
READY_TIMEOUT_S = 120.0

MODEL_LIMITS: dict[str, set[str]] = {
    "POST /v1/images/generations": {"prompt", "steps", "size"},
    "POST /v1/chat/completions": {"max_tokens"},  # over the deployment's max_output_tokens
    "POST /v1/completions": {"n", "max_tokens"},
    # names are printable (str.isprintable: more than the document's pattern can say) and
    # metadata at most 16 KiB of JSON
    "POST /admin/keys": {"team", "name", "metadata"},
    "PATCH /admin/keys/{key_id}": {"name", "metadata"},
    "POST /admin/teams": {"name", "metadata"},
    "PATCH /admin/teams/{name}": {"metadata"},
}
"""Per operation, the fields whose valid values a model (or the key store) may still refuse
(module docstring)."""

ADMIN_KEY = "schemathesis-admin-key-0123456789"
TENANCY_FOLDER = Path(tempfile.mkdtemp(prefix="blaze-schemathesis-"))
(TENANCY_FOLDER / "admin.key").write_text(ADMIN_KEY)

UPSTREAM_PORT = free_port()
SETTINGS = Settings(
    server={"max_body_bytes": 65536},
    models=[
        {
            "name": CHAT_MODEL,
            "deployments": [
                {
                    "engine": "remote",
                    "model": "fake",
                    "base_url": f"http://127.0.0.1:{UPSTREAM_PORT}/v1",
                }
            ],
        },
        {"name": IMAGE_MODEL, "deployments": [{"engine": "diffusion", "model": "builtin:digits"}]},
    ],
    auth={
        "enabled": True,
        "admin_key_file": TENANCY_FOLDER / "admin.key",
        "database_url": f"sqlite:///{TENANCY_FOLDER / 'blaze.db'}",
    },
)

CONFIG: dict[str, Any] = {
    "seed": 20261,
    "headers": {"Authorization": f"Bearer {ADMIN_KEY}"},  # auth on; the admin key may do all
    "generation": {"max-examples": 5, "database": "none"},
    "checks": {
        "positive_data_acceptance": {  # schemathesis' defaults, and 400 (module docstring)
            "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
        }
    },
    # The fuzzing phase draws from dictionaries (the coverage phase uses the examples)
    "dictionaries": {
        "chat-models": {"values": [CHAT_MODEL]},
        "image-models": {"values": [IMAGE_MODEL]},
        "served-models": {"values": [CHAT_MODEL, IMAGE_MODEL]},
        "digit-prompts": {"values": ["a handwritten digit 7", "zero", "the number 3, neatly"]},
        # names no other operation made yet (POST /admin/keys creates its team)
        "new-team-names": {"values": [f"team-{i}" for i in range(200)]},
    },
    "operations": [
        {
            "include-path-regex": "^/v1/(chat/)?completions$",
            "parameters": {"body.model": {"dictionary": "chat-models", "probability": 0.9}},
        },
        {
            "include-path": "/v1/images/generations",
            "parameters": {
                "body.model": {"dictionary": "image-models", "probability": 0.9},
                "body.prompt": {"dictionary": "digit-prompts", "probability": 0.8},
            },
        },
        {
            "include-path": "/admin/teams",
            "include-method": "POST",
            "parameters": {"body.name": {"dictionary": "new-team-names", "probability": 0.7}},
        },
        {
            "include-path": ["/v1/models/{model_id}", "/admin/cache/clear"],
            "parameters": {
                "path.model_id": {"dictionary": "served-models", "probability": 0.7},
                "body.model": {"dictionary": "served-models", "probability": 0.7},
            },
        },
    ],
}


class UpstreamThread:
    """A :class:`FakeUpstream` on ``port`` (loopback), served by an event loop in a thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    def __enter__(self) -> UpstreamThread:
        self._thread.start()
        started = serve(FakeUpstream("fake"), "127.0.0.1", self.port)
        self._runner = asyncio.run_coroutine_threadsafe(started, self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


TENANCY = build_tenancy(SETTINGS)
assert TENANCY is not None
GATEWAY = build_gateway(SETTINGS, make_engine_factory(SETTINGS.runtime), limiter=TENANCY.limiter)
APP = create_app(SETTINGS, GATEWAY, tenancy=TENANCY)
SERVED = LifespanOnce(APP, lambda: GATEWAY.ready, ready_timeout_s=READY_TIMEOUT_S)
schema = schemathesis.openapi.from_dict(APP.openapi(), config=schemathesis.Config.from_dict(CONFIG))
schema.app = SERVED  # as from_asgi does; APP.openapi() is what /openapi.json serves

BY_ID = {
    f"{method} /admin/{kind}"
    for method in ("GET", "PATCH", "DELETE")
    for kind in ("keys/{key_id}", "teams/{name}")
}
"""Operations on one key or team (see :func:`test_every_operation_answered_with_success`)."""

ANSWERS: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
"""The statuses each operation answered during the run."""


@pytest.fixture(scope="module", autouse=True)
def serving() -> Iterator[None]:
    """The fake upstream, and the app started once (every engine ready) for the module."""
    with UpstreamThread(UPSTREAM_PORT):
        assert schema["/ready"]["GET"].Case().call().status_code == 200
        yield
        SERVED.close()  # stop the gateway before its upstream goes
    shutil.rmtree(TENANCY_FOLDER, ignore_errors=True)


def valid_data_is_refused_only_for_model_limits(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """A 400 to schema-valid data names a field in :data:`MODEL_LIMITS` for the operation."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    label = f"{case.method} {case.path}"
    param = response.json()["error"]["param"]
    allowed = MODEL_LIMITS.get(label, set())
    assert param in allowed, f"{label}: valid data refused for {param!r}: {response.text}"


@schema.parametrize()
def test_api(case: schemathesis.Case) -> None:
    response = case.call()
    ANSWERS[f"{case.method} {case.path}"][response.status_code] += 1
    case.validate_response(
        response, additional_checks=[valid_data_is_refused_only_for_model_limits]
    )


def test_every_operation_answered_with_success() -> None:
    """Each documented operation got at least one 2xx (a real body reached its engine)."""
    if not ANSWERS:
        pytest.skip("run with test_api")
    documented = {f"{m.upper()} {p}" for p, item in APP.openapi()["paths"].items() for m in item}
    succeeded = {op for op, statuses in ANSWERS.items() if any(200 <= s < 300 for s in statuses)}
    # An image id, a key id or a team name exists only once it was made, which a generated
    # path cannot know; test_openapi_document.py fetches a real image, test_auth.py reads,
    # changes and deletes real keys and teams.
    missing = documented - succeeded - {"GET /v1/files/images/{image_id}", *BY_ID}
    assert not missing, {op: dict(ANSWERS[op]) for op in missing}
    assert not any(s >= 500 for statuses in ANSWERS.values() for s in statuses), dict(ANSWERS)
