"""Gateway overhead: Blaze in front of two fast fake upstreams vs an upstream called directly.

Measures, in one run, with ``wrk`` as the load generator in its own process:

- requests/s at concurrency 64, non-streamed and streamed (whole responses);
- p50 / p99 latency at concurrency 1, non-streamed and streamed;
- streamed time to first byte at concurrency 1 (a Python client, sequential requests);
- CPU per request at concurrency 64: the CPU seconds (user + system) the serving process used
  during the run divided by the requests it answered, the figure least moved by a noisy machine.

Blaze runs with routing (least_request), breakers, health checks and its access log on, as a
user would run it. Targets (issue 3): at least 0.15x direct requests/s, under 1 ms added p50
at concurrency 1, and under 1 ms added time to first byte.

With ``--auth`` (issue 12) it compares instead Blaze with auth off, with auth on (one key with
rpm, tpm and max_parallel limits, counted in this process) and with auth on and the limits in
Redis (a ``redis-server`` it starts), non-streamed at concurrency 64, rounds interleaved, the
median of each: requests/s and CPU per request, as ratios and differences to auth off. Targets:
at most +0.15 ms CPU per request and at most 15% fewer requests/s with in-process limits.

With ``--metrics`` (issue 13) it compares Blaze with metrics off and on (the dashboard's
history sampling and ``/metrics`` scraped every second), CPU per request at concurrency 64 in
interleaved rounds. Target: at most 10% more CPU per request with metrics on.

Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/gateway.py            # needs wrk (apt-get install wrk)
    OMP_NUM_THREADS=1 .venv/bin/python bench/gateway.py --duration 5
    OMP_NUM_THREADS=1 .venv/bin/python bench/gateway.py --auth --rounds 3
    OMP_NUM_THREADS=1 .venv/bin/python bench/gateway.py --metrics --rounds 5 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import start_server

BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def models_yaml(upstream_ports: list[int]) -> str:
    """The config's ``models`` section: model ``m`` over the fake upstreams on these ports."""
    return "models:\n  - name: m\n    strategy: least_request\n    deployments:\n" + "".join(
        f"      - {{engine: remote, base_url: 'http://127.0.0.1:{p}/v1', model: fake}}\n"
        for p in upstream_ports
    )


def wait_until_up(url: str, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(cmd: list[str], ready_url: str, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``cmd`` (a fake upstream) with its output discarded until ``ready_url`` answers 200;
    yields its pid."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        wait_until_up(ready_url)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str,
    body: dict[str, object],
    connections: int,
    duration_s: int,
    script_dir: Path,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run wrk against ``url``: requests/s, requests answered, p50/p99 latency in milliseconds."""
    script = script_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        + "".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in (headers or {}).items()
        )
    )
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration_s}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses against {url}:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _latency(out, "50%"),
        "p99_ms": _latency(out, "99%"),
    }


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert match, out
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def ttfb_ms(url: str, requests: int) -> float:
    """Median time to the first streamed byte, sequential requests, milliseconds."""
    samples = []
    with httpx.Client(timeout=10) as client:
        for _ in range(requests + 5):
            started = time.perf_counter()
            with client.stream("POST", url, json={**BODY, "stream": True}) as response:
                chunks = response.iter_raw()
                next(chunks)
                samples.append((time.perf_counter() - started) * 1000)
                for _ in chunks:
                    pass
    return statistics.median(samples[5:])


Row = tuple[str, str, float, float, float, float]
"""mode, target, req/s at c=64, p50 and p99 at c=1 (ms), CPU per request at c=64 (ms)."""


def measure(urls: dict[str, str], pids: dict[str, int], duration_s: int, folder: Path) -> list[Row]:
    """The wrk runs of both modes against both targets, with the serving process's CPU."""
    rows: list[Row] = []
    for label, body in (("non-streamed", BODY), ("streamed", {**BODY, "stream": True})):
        for target, url in urls.items():
            print(f"{label} {target}: wrk c=64 ...", flush=True)
            cpu_before = cpu_s(pids[target])
            throughput = wrk(url, body, 64, duration_s, folder)
            cpu_ms = (cpu_s(pids[target]) - cpu_before) * 1000 / throughput["requests"]
            print(f"{label} {target}: wrk c=1 ...", flush=True)
            latency = wrk(url, body, 1, duration_s, folder)
            rows.append(
                (label, target, throughput["rps"], latency["p50_ms"], latency["p99_ms"], cpu_ms)
            )
    return rows


def report(rows: list[Row], ttfb: dict[str, float]) -> None:
    """Print the table, the ratios to the direct calls and the targets."""
    print()
    print(
        f"{'mode':<14}{'target':<8}{'req/s c=64':>12}{'ratio':>8}"
        f"{'p50 c=1':>10}{'p99 c=1':>10}{'added p50':>11}{'CPU/req c=64':>14}"
    )
    for label in ("non-streamed", "streamed"):
        d = next(r for r in rows if r[0] == label and r[1] == "direct")
        b = next(r for r in rows if r[0] == label and r[1] == "blaze")
        for row in (d, b):
            ratio = row[2] / d[2]
            added = row[3] - d[3]
            print(
                f"{row[0]:<14}{row[1]:<8}{row[2]:>12.0f}{ratio:>7.3f}x{row[3]:>8.2f}ms"
                f"{row[4]:>8.2f}ms{added:>9.2f}ms{row[5]:>12.3f}ms"
            )
    added_ttfb = ttfb["blaze"] - ttfb["direct"]
    print(
        f"streamed TTFB p50: direct {ttfb['direct']:.2f} ms, blaze {ttfb['blaze']:.2f} ms, "
        f"added {added_ttfb:.2f} ms"
    )
    non_stream = [r for r in rows if r[0] == "non-streamed"]
    ratio = non_stream[1][2] / non_stream[0][2]
    added = non_stream[1][3] - non_stream[0][3]
    print(f"target >= 0.15x direct req/s: {'PASS' if ratio >= 0.15 else 'FAIL'} ({ratio:.3f}x)")
    print(f"target < 1 ms added p50 at c=1: {'PASS' if added < 1 else 'FAIL'} ({added:.2f} ms)")
    print(f"target < 1 ms added TTFB: {'PASS' if added_ttfb < 1 else 'FAIL'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--ttfb-requests", type=int, default=200)
    parser.add_argument("--auth", action="store_true", help="auth off vs on (issue 12)")
    parser.add_argument("--metrics", action="store_true", help="metrics off vs on (issue 13)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="--auth, --metrics: interleaved rounds"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    if args.metrics:
        from gateway_metrics import compare_metrics  # bench/ is the script's folder

        return compare_metrics(args.duration, args.rounds)
    if args.auth:
        from gateway_auth import compare_auth  # bench/ is the script's folder

        return compare_auth(args.duration, args.rounds)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ports = [free_port(), free_port(), free_port()]
    upstream = [sys.executable, "-m", "blaze_ai.devtools.fake_upstream", "--port"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = folder / "blaze.yaml"
        config.write_text(models_yaml(ports[:2]))
        urls = {
            "direct": f"http://127.0.0.1:{ports[0]}/v1/chat/completions",
            "blaze": f"http://127.0.0.1:{ports[2]}/v1/chat/completions",
        }
        up = [(*upstream, str(p), "--name", n) for p, n in zip(ports[:2], "ab", strict=True)]
        with (
            process(list(up[0]), f"http://127.0.0.1:{ports[0]}/v1/models", env) as pid_a,
            process(list(up[1]), f"http://127.0.0.1:{ports[1]}/v1/models", env),
            # output discarded, as for the upstreams: the access log must not slow Blaze down
            start_server(
                config=config, env=env, port=ports[2], ready_timeout_s=60, discard_output=True
            ) as server,
        ):
            pids = {"direct": pid_a, "blaze": server.process.pid}
            rows = measure(urls, pids, args.duration, folder)
            print("streamed time to first byte ...", flush=True)
            ttfb = {name: ttfb_ms(url, args.ttfb_requests) for name, url in urls.items()}
    report(rows, ttfb)
    return 0


if __name__ == "__main__":
    sys.exit(main())
