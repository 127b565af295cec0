"""Start ``blaze serve`` in processes forked from a parent that has already imported it.

A ``blaze serve`` start is seconds of CPU, nearly all of it importing torch, transformers,
diffusers and the web stack (measured: 4.7 CPU-s for the tests' tiny model, of which loading
the model itself is a small part). Tests that start many servers pay that once here:
multiprocessing's *forkserver*, a fresh interpreter started once (never a fork of the caller,
whose threads would not survive a fork), imports ``blaze_ai.devtools.preload`` and then forks
one child per server. Each child is a process of its own, on its own port, with its own log,
and runs the ``blaze serve`` command itself (``blaze_ai.cli``) - only the imports are shared,
as with gunicorn's ``--preload``. A real cold start (``python -m blaze_ai serve``) remains
``devtools.server.start_server``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

from blaze_ai.devtools.net import free_port
from blaze_ai.devtools.server import BlazeServer, serve_args

PRELOAD = "blaze_ai.devtools.preload"
"""The module the forkserver imports before it forks servers."""

_context = multiprocessing.get_context("forkserver")


class ForkedProcess:
    """A forked server's process with the ``subprocess.Popen`` methods ``BlazeServer`` uses."""

    def __init__(self, process: BaseProcess) -> None:
        self._process = process

    @property
    def pid(self) -> int | None:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or minus the signal that ended it; ``None`` while it runs."""
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; raise ``subprocess.TimeoutExpired`` after ``timeout``
        seconds, as ``Popen.wait`` does."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self._process.name, timeout or 0.0)
        return self._process.exitcode

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()


def start_forkserver() -> None:
    """Start the forkserver now and return at once: it imports in the background, and the
    first ``launch_forked_server`` waits only for what is left. Idempotent."""
    _context.set_forkserver_preload([PRELOAD])
    multiprocessing.forkserver.ensure_running()


def launch_forked_server(
    log_path: Path,
    *,
    config: Path | None = None,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    port: int | None = None,
) -> BlazeServer:
    """Fork ``blaze serve`` from the pre-imported forkserver and return without waiting.

    The arguments are those of ``devtools.server.launch_server``. The child's environment is
    the forkserver's (this process's when the forkserver started) updated with ``env``; a
    variable read only when torch loads, such as ``OMP_NUM_THREADS``, keeps the forkserver's
    value. The first call starts the forkserver (one import of everything, a few seconds)
    unless ``start_forkserver`` did. Call ``wait_ready()`` on the result before sending
    requests, and ``stop()`` in the end.
    """
    port = port or free_port()
    start_forkserver()
    process = _context.Process(
        target=_serve,
        args=(str(log_path), serve_args(port, config=config, args=args), dict(env or {})),
        name=f"blaze-serve-{port}",
        daemon=True,  # ended with the caller if it never stops the server
    )
    launched_at = time.perf_counter()
    process.start()
    return BlazeServer(ForkedProcess(process), port, log_path, launched_at=launched_at)


def _serve(log_path: str, argv: list[str], env: dict[str, str]) -> None:
    """The child: output to ``log_path``, then the ``blaze`` command with ``argv``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.update(env)
    _thread_lock_for_progress_bars()
    from blaze_ai.cli import app

    app(args=argv, prog_name="blaze")


def _thread_lock_for_progress_bars() -> None:
    """Give tqdm (model-loading progress bars) a thread lock instead of its default
    multiprocessing one, whose semaphore a server ended by a signal would leave to the
    forkserver's resource tracker, which warns about it when the caller exits."""
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
