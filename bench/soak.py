"""Soak: minutes of mixed load on a real Blaze server, whose memory and open files must stay flat.

Starts two fake upstreams (``blaze_ai.devtools.fake_upstream``, one process each) and
``blaze serve`` (a subprocess, its log in a temporary file) serving:

- ``fake``: the two upstreams (``least_request``), most of the traffic;
- ``smollm2``: the embedded chat model, with ``max_tokens`` 8 so it stays light on 2 cores;
- ``digits``: the embedded image model, a few ``b64_json`` requests (``url`` answers would fill
  the image store, which is bounded but large, and look like growth).

``--concurrency`` workers send requests back to back for ``--minutes``: chat and completions,
streamed and not (``soak_load.py`` holds the mix). A few requests ask at temperature 0 from a
small set of prompts (cache hits after the first), and a few streams are abandoned after their
first token (client hang-ups, not errors). Every ``--sample-s`` seconds the server process's
resident memory (RSS: the least of the reads taken every second since the previous sample, so
memory held for a few seconds is not growth) and open file descriptors are read (psutil when
installed, else ``/proc``) and one progress line is printed.

After the warm-up (``--warmup-minutes``, default 20% of the run) it prints the RSS growth (the
least-squares slope, MiB per minute), the fd count's min / max / slope, the requests, req/s and
errors (client-side, plus ``level=error`` lines and tracebacks in the server's log). Acceptance
(issue 11): RSS growth under 1 MiB/min, zero errors, fds flat (range at most ``FD_RANGE``,
slope under ``FD_SLOPE_PER_MIN``), and no request left in flight once the load stopped; the
exit status is 0 when it holds, 1 when not. ``--only PREFIX`` narrows the mix to some kinds
(``--only fake``, ``--only smollm2``, ``--only digits``) to find which path grows.

Memory: under this mix glibc's malloc keeps some freed torch buffers resident once it has raised
its mmap threshold, so the RSS rises in a few steps of 3-4 MiB over the first minutes and then
stays flat (Python object counts stay flat throughout). ``MALLOC_MMAP_THRESHOLD_=131072`` in
the environment (the server inherits it) pins the threshold: RSS 135 MiB lower and flat, for
about 15% more CPU per LLM request.

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python bench/soak.py --minutes 10 --concurrency 16
    OMP_NUM_THREADS=1 .venv/bin/python bench/soak.py --minutes 1     # a quick check
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from soak_load import Load, Tally, run_load, select

from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import BlazeServer, start_server

RSS_LIMIT_MIB_PER_MIN = 1.0
"""Acceptance: RSS growth after the warm-up must stay under this."""
FD_RANGE = 8
"""Acceptance: the open fds after the warm-up may vary by at most this many (sockets of the
clients' and the upstreams' connection pools come and go)."""
FD_SLOPE_PER_MIN = 1.0
"""Acceptance: the fd count's least-squares slope after the warm-up stays under this."""
RSS_READ_S = 1.0
"""Seconds between two reads of the RSS. A sample's RSS is the least read since the previous
sample (its low-water mark): memory held for a few seconds (a prefill's activations, a batch of
images, freed memory the allocator has not yet handed back) is not growth, memory that stays is.
"""
READY_TIMEOUT_S = 300.0


def log(message: str) -> None:
    print(f"[bench/soak] {message}", flush=True)


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of the server process, ``t_s`` seconds after the load started."""

    t_s: float
    rss_mib: float
    fds: int
    requests: int
    errors: int


class ProcessProbe:
    """Reads a process's resident memory and open file descriptors (psutil if installed)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            import psutil
        except ImportError:
            self._process = None
        else:
            self._process = psutil.Process(pid)

    def rss_bytes(self) -> int:
        """Resident set size, bytes."""
        if self._process is not None:
            return int(self._process.memory_info().rss)
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError(f"no VmRSS for process {self.pid}")

    def open_fds(self) -> int:
        """Open file descriptors."""
        if self._process is not None:
            return int(self._process.num_fds())
        return len(os.listdir(f"/proc/{self.pid}/fd"))


async def sample_until(
    probe: ProcessProbe, tally: Tally, started: float, stop: asyncio.Event, every_s: float
) -> list[Sample]:
    """Sample the server every ``every_s`` seconds until ``stop`` is set, reading its RSS every
    ``RSS_READ_S`` seconds in between; one line per sample."""
    samples: list[Sample] = []
    reads = [probe.rss_bytes()]
    due_s = 0.0
    while True:
        if stop.is_set():  # the load is over: what follows is no longer under load
            return samples
        t_s = time.monotonic() - started
        if t_s >= due_s:
            sample = Sample(
                round(t_s, 1), min(reads) / 2**20, probe.open_fds(), tally.requests, tally.errors
            )
            print_sample(sample, samples[-1] if samples else None, tally.hangups)
            samples.append(sample)
            reads, due_s = [], due_s + every_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RSS_READ_S)
        reads.append(probe.rss_bytes())


def print_sample(sample: Sample, previous: Sample | None, hangups: int) -> None:
    """The progress line of one sample, with the request rate since ``previous``."""
    rate = 0.0
    if previous is not None and sample.t_s > previous.t_s:
        rate = (sample.requests - previous.requests) / (sample.t_s - previous.t_s)
    log(
        f"{sample.t_s:7.1f} s  rss {sample.rss_mib:8.1f} MiB  fds {sample.fds:4d}  "
        f"requests {sample.requests:7d} ({rate:6.1f}/s)  errors {sample.errors}  "
        f"hang-ups {hangups}"
    )


def slope_per_min(samples: list[Sample], value: str) -> float:
    """Least-squares slope of ``value`` over time, per minute (0 with fewer than 2 samples)."""
    if len(samples) < 2:
        return 0.0
    xs = [s.t_s / 60 for s in samples]
    ys = [float(getattr(s, value)) for s in samples]
    return statistics.linear_regression(xs, ys).slope


def server_errors(server: BlazeServer) -> list[str]:
    """Lines of the server's log at error or critical level, or with a traceback."""
    bad = ("level=error", "level=critical", "Traceback")
    return [line for line in server.log().splitlines() if any(b in line for b in bad)]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one soak produced.

    Attributes:
        samples: the server readings, every ``--sample-s`` seconds.
        tally: the requests the workers sent, by kind, with their errors.
        elapsed_s: seconds the load ran.
        log_errors: error lines and tracebacks of the server's log.
        held: requests the deployments still held (in flight or queued) after the load.
    """

    samples: list[Sample]
    tally: Tally
    elapsed_s: float
    log_errors: list[str]
    held: int


def print_requests(outcome: Outcome) -> None:
    """Requests by kind, with their errors and the first error messages."""
    tally = outcome.tally
    print(f"requests: {tally.requests} ({tally.requests / outcome.elapsed_s:.1f} req/s)")
    for kind, count in sorted(tally.by_kind.items()):
        print(f"  {kind:<28}{count:>8}  errors {tally.errors_by_kind.get(kind, 0)}")
    print(f"client hang-ups (on purpose, not errors): {tally.hangups}")
    for message in tally.first_errors + outcome.log_errors[:5]:
        print(f"  error: {message[:300]}")


def acceptance(outcome: Outcome, warmup_s: float) -> dict[str, bool]:
    """Each check of issue 11's acceptance, described with its figures, and whether it holds."""
    after = [s for s in outcome.samples if s.t_s >= warmup_s]
    rss = slope_per_min(after, "rss_mib")
    fds = [s.fds for s in after] or [0]
    fd_slope = slope_per_min(after, "fds")
    client, server = outcome.tally.errors, len(outcome.log_errors)
    errors = client + server
    fds_flat = max(fds) - min(fds) <= FD_RANGE and fd_slope < FD_SLOPE_PER_MIN
    return {
        f"RSS growth {rss:+.3f} MiB/min < {RSS_LIMIT_MIB_PER_MIN}": rss < RSS_LIMIT_MIB_PER_MIN,
        f"open fds min {min(fds)} max {max(fds)} slope {fd_slope:+.3f}/min: flat "
        f"(range <= {FD_RANGE}, slope < {FD_SLOPE_PER_MIN})": fds_flat,
        f"errors {errors} (client {client}, server log {server}) == 0": errors == 0,
        f"requests held after the load {outcome.held} == 0": outcome.held == 0,
        f"samples after warm-up {len(after)} >= 3": len(after) >= 3,
    }


def report(outcome: Outcome, warmup_s: float) -> bool:
    """Print the figures after the warm-up and each acceptance check; True when all pass."""
    after = [s for s in outcome.samples if s.t_s >= warmup_s]
    print()
    print(
        f"load: {outcome.elapsed_s / 60:.1f} min, warm-up {warmup_s / 60:.1f} min, "
        f"{len(after)} samples after it"
    )
    print_requests(outcome)
    if after:
        rss = [s.rss_mib for s in after]
        print(
            f"RSS after warm-up: {rss[0]:.1f} -> {rss[-1]:.1f} MiB "
            f"(min {min(rss):.1f}, max {max(rss):.1f})"
        )
    checks = acceptance(outcome, warmup_s)
    for check, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")
    passed = all(checks.values())
    print(f"acceptance: {'PASS' if passed else 'FAIL'}")
    return passed


def held_after_load(base_url: str, settle_s: float = 5.0) -> int:
    """Print each deployment's figures once nothing is held (or after ``settle_s`` seconds);
    return the requests still in flight or queued."""
    deadline = time.monotonic() + settle_s
    while True:
        data = httpx.get(f"{base_url}/admin/deployments", timeout=10).json()["data"]
        held = sum(d["in_flight"] + d["queue_depth"] for d in data)
        if held == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for d in data:
        print(
            f"  {d['name']:<12} requests {d['requests']:>7}  failures {d['failures']}  "
            f"client_disconnects {d['client_disconnects_total']}  in_flight {d['in_flight']}  "
            f"queue {d['queue_depth']}"
        )
    return int(held)


@contextlib.contextmanager
def fake_upstream(name: str) -> Iterator[str]:
    """A fake upstream process on a free port; yields its base URL once it answers."""
    port = free_port()
    command = [sys.executable, "-m", "blaze_ai.devtools.fake_upstream", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--name", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"fake upstream {name} did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def write_config(folder: Path, upstreams: list[str]) -> Path:
    """The server's ``blaze.yaml``: ``fake`` on the upstreams, ``smollm2`` and ``digits``."""
    deployments = "".join(
        f"      - {{engine: remote, base_url: '{url}', model: fake}}\n" for url in upstreams
    )
    config = folder / "blaze.yaml"
    config.write_text(
        "models:\n"
        "  - name: fake\n"
        "    strategy: least_request\n"
        "    deployments:\n"
        f"{deployments}"
        "  - name: smollm2\n"
        "    deployments:\n"
        "      - {engine: llm, model: 'builtin:smollm2-135m-instruct'}\n"
        "  - name: digits\n"
        "    deployments: [{engine: diffusion, model: 'builtin:digits'}]\n"
    )
    return config


async def soak(server: BlazeServer, args: argparse.Namespace) -> tuple[list[Sample], Tally, float]:
    """Run the load and the sampler side by side: the samples, the tally, the seconds."""
    tally = Tally()
    stop = asyncio.Event()
    started = time.monotonic()
    pid = server.process.pid
    assert pid is not None
    sampler = asyncio.create_task(
        sample_until(ProcessProbe(pid), tally, started, stop, args.sample_s)
    )
    until = started + args.minutes * 60
    load = Load(server.base_url, args.concurrency, until, args.seed, select(args.only))
    await run_load(load, tally)
    elapsed_s = time.monotonic() - started
    stop.set()
    return await sampler, tally, elapsed_s


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load")
    parser.add_argument("--concurrency", type=int, default=16, help="requests at once")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    parser.add_argument(
        "--warmup-minutes", type=float, default=None, help="default: 20%% of --minutes"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the request mix")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PREFIX",
        help="send only the kinds whose name starts with PREFIX (repeatable): 'fake', "
        "'smollm2', 'digits', 'fake chat stream' ...",
    )
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    warmup_s = 60 * (args.warmup_minutes if args.warmup_minutes is not None else args.minutes / 5)
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_upstream("a") as url_a,
        fake_upstream("b") as url_b,
    ):
        config = write_config(Path(tmp), [url_a, url_b])
        log("starting blaze serve (fake upstreams, smollm2, digits) ...")
        with start_server(
            Path(tmp) / "server.log", config=config, ready_timeout_s=READY_TIMEOUT_S
        ) as server:
            log(f"ready in {server.ready_after_s:.1f} s; {args.minutes} min at {args.concurrency}")
            samples, tally, elapsed_s = asyncio.run(soak(server, args))
            held = held_after_load(server.base_url)
            outcome = Outcome(samples, tally, elapsed_s, server_errors(server), held)
    return 0 if report(outcome, warmup_s) else 1


if __name__ == "__main__":
    sys.exit(main())
