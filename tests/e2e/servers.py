"""Tiny-model servers for the e2e tests: the ``blaze serve`` command, forked from a parent that
has imported it once (``blaze_ai.devtools.forked``), each with its own config, port and log.

A cold ``python -m blaze_ai serve`` spends ~5 s of CPU on imports; the embedded-model server
(``embedded_server``) still starts that way, and its test checks how long the start takes.
"""

from __future__ import annotations

from pathlib import Path

from blaze_ai.devtools.forked import launch_forked_server
from blaze_ai.devtools.server import BlazeServer

READY_TIMEOUT_S = 120.0
"""Seconds a server may take to answer ``/ready``."""


def tiny_config_text(model_dir: Path, deployment: str = "", extra: str = "") -> str:
    """A config serving the tiny model as ``tiny``; ``deployment`` adds fields to its deployment
    (``", max_queue: 8"``), ``extra`` appends top-level sections."""
    return (
        "models:\n"
        "  - name: tiny\n"
        "    deployments:\n"
        f"      - {{engine: llm, model: '{model_dir}'{deployment}}}\n"
        f"{extra}"
    )


def launch(folder: Path, config: str | Path) -> BlazeServer:
    """Launch a server on ``config`` (a file, or its text, written to ``folder/blaze.yaml``)
    with its log in ``folder/server.log``; return without waiting for it."""
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(config, str):
        (folder / "blaze.yaml").write_text(config)
        config = folder / "blaze.yaml"
    return launch_forked_server(folder / "server.log", config=config)


def start(folder: Path, config: str | Path) -> BlazeServer:
    """``launch``, then wait until the server is ready."""
    return launch(folder, config).wait_ready(READY_TIMEOUT_S)
