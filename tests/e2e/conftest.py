"""Real ``blaze serve`` processes: the embedded-model server (a cold start), and the tiny-model
server (forked from a pre-imported parent, ``tests/e2e/servers.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.devtools.forked import start_forkserver
from blaze_ai.devtools.server import BlazeServer, start_server
from tests.e2e.servers import start

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests of this folder last, after the in-process ones, and start the forkserver
    of the tiny-model servers now if any is selected: its one import of everything (seconds of
    CPU) then runs while the in-process tests do."""
    items.sort(key=lambda item: HERE in item.path.parents)  # stable: keeps each group's order
    if items and HERE in items[-1].path.parents:
        start_forkserver()


@pytest.fixture(scope="session")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BlazeServer]:
    """The default server, started after the one-time GGUF conversion has been done."""
    from blaze_ai.config.schema import RuntimeConfig
    from blaze_ai.engines.llm.loader import resolve_source

    # The first start on a machine converts the GGUF file (about 25 s); do it up front so the
    # server start below measures an ordinary start.
    resolve_source(
        LLMDeploymentConfig(model="builtin:smollm2-135m-instruct"),
        RuntimeConfig().cache_dir.expanduser(),
    )
    folder = tmp_path_factory.mktemp("embedded")
    server = start_server(Path(folder) / "server.log", ready_timeout_s=120)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tiny_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_config: Path
) -> Iterator[BlazeServer]:
    """``blaze serve`` on ``tiny_config``: the tiny model, served as ``tiny`` (alias
    ``default``), and the embedded digits image model, served as ``digits``."""
    server = start(tmp_path_factory.mktemp("tiny-server"), tiny_config)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def http(tiny_server: BlazeServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_server.base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def client(tiny_server: BlazeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{tiny_server.base_url}/v1", api_key="unused", max_retries=0)
