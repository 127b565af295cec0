"""Shared fixtures: tiny random models on disk, and real ``blaze serve`` subprocesses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

from blaze_ai.devtools.server import BlazeServer, start_server
from tests.redis_server import RedisServer
from tests.tiny_models import build_tiny_llama, build_tiny_stable_diffusion


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama + tokenizer saved with ``save_pretrained`` (context window 256)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Stable Diffusion pipeline saved with ``save_pretrained`` (64x64 images)."""
    return build_tiny_stable_diffusion(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_server(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path
) -> Iterator[BlazeServer]:
    """``blaze serve`` on the tiny model, served as ``tiny`` (alias ``default``), and the
    embedded digits image model, served as ``digits``."""
    folder = tmp_path_factory.mktemp("tiny-server")
    config = folder / "blaze.yaml"
    config.write_text(
        "server:\n"
        "  max_body_bytes: 65536\n"
        "models:\n"
        "  - name: tiny\n"
        "    aliases: [default]\n"
        "    deployments:\n"
        f"      - {{engine: llm, model: '{tiny_llama_dir}'}}\n"
        "  - name: digits\n"
        "    deployments: [{engine: diffusion, model: 'builtin:digits'}]\n"
    )
    server = start_server(folder / "server.log", config=config, ready_timeout_s=120)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port for the whole session (stopped after).

    A test that kills it must start it again before it returns."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()
