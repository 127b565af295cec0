"""The real server on the embedded SmolLM2-135M-Instruct, started as ``blaze serve``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.devtools.server import BlazeServer, start_server


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
