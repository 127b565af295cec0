"""Start ``blaze serve`` as a real subprocess on a loopback port: for the tests and the benchmarks.

``start_server`` launches ``python -m blaze_ai serve`` with this interpreter, waits until
``GET /ready`` answers 200 and returns a ``BlazeServer``, which is also a context manager that
stops the server on exit (``with start_server(...) as server:``). The server's output (stdout
and stderr) goes to a log file (the caller's, or a temporary one removed on ``stop``), or is
discarded.

A start is mostly imports and model loading (seconds of CPU). To start several servers at
once, ``launch_server`` each (it returns without waiting), then ``wait_until_ready`` them all;
``devtools/forked.py`` starts servers without the imports, forked from a pre-imported parent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import httpx

from blaze_ai.devtools.net import free_port

READY_POLL_S = 0.05
"""Seconds between two ``/ready`` probes while a server starts."""
STOP_TIMEOUT_S = 20.0
"""Seconds ``BlazeServer.stop`` waits after SIGTERM before it kills the process."""
ERROR_LOG_CHARS = 10_000
"""How many trailing characters of the server log a ``ServerStartError`` message carries."""


class ServerStartError(RuntimeError):
    """``blaze serve`` exited, or did not answer ``/ready`` with 200, while it was starting.

    The message ends with the tail of the server log (when the output was kept)."""


class ServerProcess(Protocol):
    """What ``BlazeServer`` needs of its process: the part of ``subprocess.Popen`` it uses."""

    @property
    def pid(self) -> int | None: ...

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


@dataclass
class BlazeServer:
    """A running ``blaze serve`` subprocess.

    ``log_path`` is the file that receives its stdout and stderr, or ``None`` when the output is
    discarded; ``launched_at`` is the :func:`time.perf_counter` reading taken just before the
    process was started; ``ready_after_s`` is the time in seconds from then until ``wait_ready``
    first saw ``/ready`` answer 200 (0.0 before). Used as a context manager, it
    yields itself and calls ``stop()`` on exit."""

    process: ServerProcess
    port: int
    log_path: Path | None
    ready_after_s: float = 0.0
    remove_log_on_stop: bool = False
    launched_at: float = 0.0

    def __enter__(self) -> BlazeServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """The server's output so far ('' when it is discarded or the log file is gone)."""
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout_s: float = 300.0) -> BlazeServer:
        """Poll ``GET /ready`` every ``READY_POLL_S`` s until it answers 200; set
        ``ready_after_s`` and return the server.

        Raises:
            ServerStartError: the process exited, or ``/ready`` did not answer 200 within
                ``timeout_s`` seconds of the launch (the process is stopped first).
        """
        try:
            self.ready_after_s = _wait_ready(self, self.launched_at, timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Terminate the process (SIGTERM), kill it if still alive after ``timeout_s`` seconds,
        and wait for it; then remove a temporary log file. Idempotent; raises nothing."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.remove_log_on_stop and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def serve_command(port: int, *, config: Path | None = None, args: Sequence[str] = ()) -> list[str]:
    """The command line ``start_server`` runs: ``python -m blaze_ai serve --port PORT`` with
    this interpreter, then ``--config CONFIG`` when given, then ``args``."""
    return [sys.executable, "-m", "blaze_ai", *serve_args(port, config=config, args=args)]


def serve_args(port: int, *, config: Path | None = None, args: Sequence[str] = ()) -> list[str]:
    """The arguments of the ``blaze`` command: ``serve --port PORT [--config CONFIG] *args``."""
    command = ["serve", "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    return [*command, *args]


def start_server(
    log_path: Path | None = None,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    ready_timeout_s: float = 300.0,
    discard_output: bool = False,
    start_new_session: bool = False,
) -> BlazeServer:
    """Start ``blaze serve`` and wait until ``GET /ready`` answers 200.

    Args:
        log_path: file for the server's stdout and stderr (created or truncated); ``None``: a
            temporary file, removed by ``BlazeServer.stop``.
        config: passed as ``--config``; ``None``: the server's default configuration.
        env: variables added to (or overriding) this process's environment;
            ``OMP_NUM_THREADS`` defaults to 1 and, unless the output is discarded,
            ``PYTHONUNBUFFERED`` is set to 1.
        args: extra command-line arguments, for example ``["--log-level", "warning"]``.
        port: the loopback port to serve on; ``None`` or 0: a free one.
        ready_timeout_s: seconds to wait for ``/ready`` (polled every ``READY_POLL_S`` s).
        discard_output: send the output to ``/dev/null`` instead of a log file (``log_path``
            must then be ``None``), for benchmarks where writing the log would cost time.
        start_new_session: run the server in its own session, so a Ctrl-C in the terminal
            reaches only the caller, which then stops the server itself.

    Returns:
        The running server; the caller must call ``stop()``, or use it in a ``with`` block.

    Raises:
        ServerStartError: the process exited, or ``/ready`` did not answer 200 within
            ``ready_timeout_s`` seconds (the process is stopped first).
        ValueError: ``discard_output`` with a ``log_path``.
        OSError: the log file could not be opened or the interpreter could not be started.
    """
    server = launch_server(
        log_path,
        config=config,
        env=env,
        args=args,
        port=port,
        discard_output=discard_output,
        start_new_session=start_new_session,
    )
    return server.wait_ready(ready_timeout_s)


def launch_server(
    log_path: Path | None = None,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
    discard_output: bool = False,
    start_new_session: bool = False,
) -> BlazeServer:
    """Start the ``blaze serve`` process and return at once, without waiting for ``/ready``.

    The arguments are those of :func:`start_server`. The caller must call ``wait_ready()``
    (or :func:`wait_until_ready`) before sending requests, and ``stop()`` in the end.
    """
    if discard_output and log_path is not None:
        raise ValueError("discard_output=True takes no log_path")
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.setdefault("OMP_NUM_THREADS", "1")
    if not discard_output:
        full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    remove_log = False
    if log_path is None and not discard_output:
        fd, name = tempfile.mkstemp(prefix="blaze-serve-", suffix=".log")
        os.close(fd)
        log_path, remove_log = Path(name), True
    command = serve_command(port, config=config, args=args)
    with contextlib.ExitStack() as stack:
        output: int | IO[bytes] = subprocess.DEVNULL
        if log_path is not None:
            output = stack.enter_context(log_path.open("wb"))
        launched_at = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=start_new_session,
        )
    return BlazeServer(
        process, port, log_path, remove_log_on_stop=remove_log, launched_at=launched_at
    )


def wait_until_ready(servers: Sequence[BlazeServer], timeout_s: float = 300.0) -> None:
    """Wait until every launched server answers ``/ready`` with 200 (they start side by side,
    so this takes about as long as the slowest). If one fails, all are stopped.

    Raises:
        ServerStartError: as ``BlazeServer.wait_ready``, for the first server that failed.
    """
    try:
        for server in servers:
            server.wait_ready(timeout_s)
    except BaseException:
        for server in servers:
            server.stop()
        raise


def _wait_ready(server: BlazeServer, started: float, timeout_s: float) -> float:
    """Poll ``/ready`` until 200; return the seconds since ``started`` (a perf_counter)."""
    deadline = started + timeout_s
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() < deadline:
            if server.process.poll() is not None:
                raise ServerStartError(
                    f"blaze serve exited with {server.process.returncode}:\n{_log_tail(server)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{server.base_url}/ready").status_code == 200:
                    return time.perf_counter() - started
            time.sleep(READY_POLL_S)
    raise ServerStartError(f"blaze serve was not ready after {timeout_s} s:\n{_log_tail(server)}")


def _log_tail(server: BlazeServer) -> str:
    if server.log_path is None:
        return "(output discarded)"
    return server.log()[-ERROR_LOG_CHARS:]
