"""Fake upstream processes (``python -m blaze_ai.devtools.fake_upstream``) for the e2e tests,
each on its own loopback port, steered over ``POST /control``."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from blaze_ai.devtools.net import free_port


@dataclass
class Upstream:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def control(self, **behaviour: object) -> None:
        httpx.post(f"{self.url}/control", json=behaviour, timeout=5).raise_for_status()

    def requests(self) -> int:
        return int(httpx.get(f"{self.url}/stats", timeout=5).json()["requests"])

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def launch_upstream(name: str) -> Upstream:
    """Start a fake upstream process; ``wait_until_up`` before sending it requests."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "blaze_ai.devtools.fake_upstream",
        "--port",
        str(port),
        "--name",
        name,
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Upstream(name, port, process)


def wait_until_up(upstream: Upstream) -> None:
    for _ in range(500):  # 10 s
        try:
            httpx.get(f"{upstream.url}/v1/models", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.02)
    upstream.process.kill()
    raise RuntimeError("fake upstream did not start")
