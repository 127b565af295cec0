"""The life cycle every local engine shares: its state, its last error, and the checks on them.

An engine holds one :class:`EngineLifecycle` (composition, not a base class) and keeps its own
public surface (``state``, ``last_error``, ``check_health``) by reading it::

    starting() -> load(fn) -> ready()        start(): FAILED + EngineDeadError if fn raises
    check_health() / require_ready()         EngineUnavailableError unless READY or DEGRADED
    stopped()                                stop()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

from blaze_ai.engines.base import EngineState
from blaze_ai.errors import BlazeError, EngineDeadError, EngineUnavailableError

T = TypeVar("T")

SERVING_STATES = frozenset({EngineState.READY, EngineState.DEGRADED})
"""States in which an engine takes requests."""
RETRY_AFTER_S = 5.0
"""``Retry-After`` sent with a request refused because the engine is not serving, in seconds."""

LOAD_LOCK = threading.RLock()
"""Held while any engine of this process loads weights: one model loads at a time.

``from_pretrained`` in transformers and diffusers builds modules under accelerate's
``init_empty_weights``, which patches ``torch.nn.Module.register_parameter`` for the whole
process; two loads in two threads then see each other's meta tensors ("Cannot copy out of meta
tensor"), which was seen when the default chat and image models started together. The loads
are CPU-bound anyway, so running them one after the other costs little. Re-entrant: a
diffusion engine takes it again when its pipeline cache reloads an evicted pipeline.
"""


class EngineLifecycle:
    """The state and last error of one engine, and the checks every request path makes.

    Args:
        name: the engine's deployment name, used in error messages.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._state = EngineState.STARTING
        self._last_error: str | None = None

    @property
    def state(self) -> EngineState:
        """The engine's current state (STARTING until started)."""
        return self._state

    @property
    def last_error(self) -> str | None:
        """The latest start failure as ``Type: message``; None if it never failed."""
        return self._last_error

    def starting(self) -> None:
        """The engine begins to start (or restart)."""
        self._state = EngineState.STARTING

    def ready(self) -> None:
        """The engine serves."""
        self._state = EngineState.READY

    def degraded(self) -> None:
        """The engine still serves, but something is wrong (slow, errors)."""
        self._state = EngineState.DEGRADED

    def stopped(self) -> None:
        """The engine was stopped; it serves nothing until started again."""
        self._state = EngineState.STOPPED

    def fail(self, message: str, *, last_error: str | None = None) -> EngineDeadError:
        """Mark the engine FAILED and return the error for the caller to raise.

        Args:
            message: the error's message, sent to clients.
            last_error: what :attr:`last_error` records; None records ``message``.
        """
        self._state = EngineState.FAILED
        self._last_error = last_error if last_error is not None else message
        return EngineDeadError(message)

    async def load(self, load: Callable[[], T]) -> T:
        """Run the blocking ``load`` in a worker thread, under :data:`LOAD_LOCK`, and return
        what it returns.

        Raises:
            EngineDeadError: ``load`` raised; the state is FAILED and :attr:`last_error` names
                the cause (``engine NAME failed to load: MESSAGE``).
        """
        try:
            return await asyncio.to_thread(_locked, load)
        except Exception as exc:
            message = exc.message if isinstance(exc, BlazeError) else str(exc)
            raise self.fail(
                f"engine {self.name} failed to load: {message}",
                last_error=f"{type(exc).__name__}: {exc}",
            ) from exc

    def check_health(self) -> None:
        """Return if the engine serves.

        Raises:
            EngineUnavailableError: the state is neither READY nor DEGRADED.
        """
        if self._state not in SERVING_STATES:
            raise EngineUnavailableError(f"engine {self.name} is {self._state.value}")

    def require_ready(self) -> None:
        """Return if the engine may take a request.

        Raises:
            EngineUnavailableError: the state is neither READY nor DEGRADED; ``Retry-After``
                is :data:`RETRY_AFTER_S`.
        """
        if self._state not in SERVING_STATES:
            raise EngineUnavailableError(
                f"engine {self.name} is {self._state.value}", retry_after_s=RETRY_AFTER_S
            )


def _locked(load: Callable[[], T]) -> T:
    with LOAD_LOCK:
        return load()
