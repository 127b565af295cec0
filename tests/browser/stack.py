"""The server the browser tests look at: a real ``blaze serve`` subprocess with auth on, serving
the embedded chat model ``smollm2``, the embedded image model ``digits``, and ``remote`` over two
fake upstream processes (``a`` behind ``remote/0``, ``b`` behind ``remote/1``).

``remote`` goes round robin, with a breaker that opens after 2 failures and stays open 30 s, and
2 retries, so a client still gets its answer from ``b`` once ``a`` is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from blaze_ai.config.schema import LLMDeploymentConfig, RuntimeConfig
from blaze_ai.devtools.server import BlazeServer, start_server
from tests.e2e.upstreams import Upstream, launch_upstream, wait_until_up

ADMIN_KEY = "blaze-dashboard-test-admin-key-0123456789"
TEAM = "research"
READY_TIMEOUT_S = 120.0


@dataclass
class Stack:
    """The running server, its two upstreams, and a key of team :data:`TEAM`."""

    server: BlazeServer
    upstreams: dict[str, Upstream]
    team_key: str = ""

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def dashboard_url(self) -> str:
        return f"{self.server.base_url}/dashboard"

    def admin(self, timeout_s: float = 60.0) -> httpx.Client:
        """A client of the server with the admin key."""
        return client(self.base_url, ADMIN_KEY, timeout_s)

    def async_admin(self, timeout_s: float = 60.0) -> httpx.AsyncClient:
        """An async client of the server with the admin key."""
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s)


def client(base_url: str, key: str, timeout_s: float = 60.0) -> httpx.Client:
    """A client of ``base_url`` sending ``key`` as a Bearer token."""
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)


def config_text(a: Upstream, b: Upstream, database: Path) -> str:
    """The server's ``blaze.yaml``."""
    return (
        "auth:\n"
        f"  database_url: 'sqlite:///{database}'\n"
        "models:\n"
        "  - name: smollm2\n"
        "    deployments: [{engine: llm, model: 'builtin:smollm2-135m-instruct'}]\n"
        "  - name: digits\n"
        "    deployments: [{engine: diffusion, model: 'builtin:digits'}]\n"
        "  - name: remote\n"
        "    strategy: round_robin\n"
        "    retry: {num_retries: 2, backoff_base_s: 0}\n"
        "    breaker: {failure_threshold: 2, cooldown_s: 30}\n"
        # slow health checks: the breaker, not a health check, is what sees `a` go
        "    health_check: {interval_s: 60}\n"
        "    deployments:\n"
        f"      - {{engine: remote, base_url: '{a.url}/v1', model: fake, timeout_s: 5}}\n"
        f"      - {{engine: remote, base_url: '{b.url}/v1', model: fake, timeout_s: 5}}\n"
    )


@contextlib.contextmanager
def running_stack(folder: Path) -> Iterator[Stack]:
    """Start the upstreams and the server (logs in ``folder``); stop them all on exit."""
    # The first start on a machine converts the embedded model's GGUF file (about 25 s); do it
    # here, once, as the e2e tests do, so the server starts in its ordinary time.
    resolve_embedded_model()
    folder.mkdir(parents=True, exist_ok=True)
    upstreams = {"a": launch_upstream("a"), "b": launch_upstream("b")}
    try:
        for upstream in upstreams.values():
            wait_until_up(upstream)
        config = folder / "blaze.yaml"
        config.write_text(config_text(upstreams["a"], upstreams["b"], folder / "blaze.db"))
        server = start_server(
            folder / "server.log",
            config=config,
            env={"BLAZE_ADMIN_KEY": ADMIN_KEY},
            ready_timeout_s=READY_TIMEOUT_S,
        )
        try:
            stack = Stack(server, upstreams)
            stack.team_key = _team_traffic(stack)
            yield stack
        finally:
            server.stop()
    finally:
        for upstream in upstreams.values():
            upstream.stop()


def resolve_embedded_model() -> None:
    """Convert the embedded chat model's GGUF file once (a no-op when done before)."""
    from blaze_ai.engines.llm.loader import resolve_source

    resolve_source(
        LLMDeploymentConfig(model="builtin:smollm2-135m-instruct"),
        RuntimeConfig().cache_dir.expanduser(),
    )


def _team_traffic(stack: Stack) -> str:
    """Create a key of team :data:`TEAM` and send one request with it, so the usage table
    has a team row; return the key's secret."""
    with stack.admin() as admin:
        created = admin.post("/admin/keys", json={"team": TEAM, "name": "dashboard-test"})
        created.raise_for_status()
        secret = str(created.json()["key"])
    with client(stack.base_url, secret) as team:
        body = {"model": "remote", "messages": [{"role": "user", "content": "hello"}]}
        team.post("/v1/chat/completions", json=body).raise_for_status()
    return secret
