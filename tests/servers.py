"""Start ``blaze serve`` as a real subprocess on a free loopback port, for API and e2e tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from blaze_ai.devtools.net import free_port


@dataclass
class BlazeServer:
    """A running ``blaze serve`` subprocess."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ready_after_s: float = 0.0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    log_path: Path,
    *,
    config: Path | None = None,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 300.0,
) -> BlazeServer:
    """Start the server and wait until ``/ready`` answers 200 (raises with the log otherwise)."""
    port = free_port()
    cmd = [sys.executable, "-m", "blaze_ai", "serve", "--port", str(port)]
    if config is not None:
        cmd += ["--config", str(config)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    log_file = log_path.open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)
    server = BlazeServer(process, port, log_path)
    deadline = started + ready_timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"blaze serve exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/ready", timeout=1.0).status_code == 200:
                server.ready_after_s = time.perf_counter() - started
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"blaze serve was not ready after {ready_timeout_s} s:\n{server.log()}")
