"""Shared fixtures: tiny random models on disk, the tiny-model server's config, and Redis."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import PostgresServer
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
def tiny_config(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    """The tiny-model server's ``blaze.yaml``: the tiny model, served as ``tiny`` (alias
    ``default``), and the embedded digits image model, served as ``digits``; 64 KiB bodies.

    The in-process app of ``tests/api`` and the ``blaze serve`` of ``tests/e2e`` both load it."""
    config = tmp_path_factory.mktemp("tiny-config") / "blaze.yaml"
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
    return config


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real ``redis-server`` on a free loopback port for the whole session (stopped after).

    A test that kills it must start it again before it returns."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL on a free loopback port for the whole session (stopped and removed
    after). Its folder is outside pytest's (which only root may enter), for the ``postgres``
    user. A test that stops it must start it again before it returns."""
    folder = Path(tempfile.mkdtemp(prefix="blaze-pg-"))
    server = PostgresServer(folder)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)
