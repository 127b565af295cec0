"""``bench/gateway.py --auth``: Blaze with auth off, on (in-process limits), on (Redis limits).

Three Blaze servers in front of the same two fake upstreams; wrk at concurrency 64,
non-streamed, each server in turn for ``rounds`` interleaved rounds (so drift on a shared
machine hits all three alike); the median requests/s and CPU per request of each, and their
ratio and difference to auth off. The key has rpm, tpm and max_parallel limits far above the
load, so every request is counted on both the key and its team but none is refused.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import httpx
from cache import redis_server  # bench/cache.py's throw-away redis-server
from gateway import models_yaml, process
from gateway_compare import Figures, medians, run_rounds

from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import start_server

ADMIN_KEY = "bench-admin-key-0123456789abcdef"
MODES = ("auth off", "auth on", "auth on, redis", "auth on, no usage")


def _config(folder: Path, upstreams: list[int], auth: str) -> Path:
    text = models_yaml(upstreams)
    path = folder / f"blaze-{len(list(folder.glob('blaze-*')))}.yaml"
    path.write_text(text + "cache:\n  memory: null\n" + auth)
    return path


def _auth_section(folder: Path, redis_url: str | None, *, usage: bool = True) -> str:
    (folder / "admin.key").write_text(ADMIN_KEY)
    database = folder / f"keys-{len(list(folder.glob('keys-*.db')))}.db"
    database.touch()
    text = (
        "auth:\n  enabled: true\n"
        f"  admin_key_file: '{folder / 'admin.key'}'\n  database_url: 'sqlite:///{database}'\n"
    )
    text += "" if usage else "usage:\n  enabled: false\n"
    return text + (f"limits:\n  redis_url: '{redis_url}'\n" if redis_url else "")


def _new_key(port: int) -> str:
    limits = {"rpm": 10**9, "tpm": 10**12, "max_parallel": 10**6}
    response = httpx.post(
        f"http://127.0.0.1:{port}/admin/keys",
        json={"team": "bench", **limits},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    response.raise_for_status()
    key: str = response.json()["key"]
    return key


def compare_auth(duration_s: int, rounds: int) -> int:
    """Run the comparison and print it; 0 when the in-process targets hold, else 1."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    upstream_ports = [free_port(), free_port()]
    cmd = [sys.executable, "-m", "blaze_ai.devtools.fake_upstream", "--port"]
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        for port, name in zip(upstream_ports, "ab", strict=True):
            ready = f"http://127.0.0.1:{port}/v1/models"
            stack.enter_context(process([*cmd, str(port), "--name", name], ready, env))
        redis_url = stack.enter_context(redis_server(folder))
        sections = [
            "",
            _auth_section(folder, None),
            _auth_section(folder, redis_url),
            _auth_section(folder, None, usage=False),
        ]
        servers = []
        for mode, section in zip(MODES, sections, strict=True):
            print(f"starting Blaze, {mode} ...", flush=True)
            config = _config(folder, upstream_ports, section)
            servers.append(
                stack.enter_context(
                    start_server(config=config, env=env, ready_timeout_s=60, discard_output=True)
                )
            )
        headers = [{}] + [{"Authorization": f"Bearer {_new_key(s.port)}"} for s in servers[1:]]
        figures = run_rounds(list(MODES), servers, headers, duration_s, rounds, folder)
    return _report(figures)


def _report(figures: Figures) -> int:
    median = medians(figures)
    base_rps, base_cpu = median[MODES[0]]
    rps, cpu = median[MODES[1]]
    cpu_ok, rps_ok = cpu - base_cpu <= 0.15, rps / base_rps >= 0.85
    print(f"target <= +0.15 ms CPU/req (in-process limits): {'PASS' if cpu_ok else 'FAIL'}")
    print(f"target >= 0.85x req/s (in-process limits): {'PASS' if rps_ok else 'FAIL'}")
    return 0 if cpu_ok and rps_ok else 1
