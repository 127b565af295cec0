"""The engine protocols every engine implements, and the state and load they report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import ImageRequest, ImageResult, StreamItem, TextRequest, TextResult


class EngineState(StrEnum):
    """Life cycle of an engine: starting -> ready <-> degraded; failed; stopped."""

    STARTING = "starting"
    READY = "ready"
    DEGRADED = "degraded"  # serving, but something is wrong (slow, errors)
    FAILED = "failed"  # cannot serve until restarted
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """How busy an engine is, read by load balancers.

    Attributes:
        in_flight: requests the engine has accepted and not finished (running or queued).
        queue_depth: of those, requests waiting for the engine to start them.
        batch_size: sequences the engine decodes together now (0 for engines that do not batch).
        peak_batch_size: most sequences (or images) the engine has run together since it
            started; never over its ``max_batch_size``.
        cancelled_total: requests the engine removed early since it started (client gone or
            deadline passed), freeing their place.
        cached_prompt_tokens_total: prompt tokens whose keys and values came from the engine's
            prefix cache instead of a forward pass, since it started.
        prefill_tokens_total: prompt tokens the engine ran through its model since it started.
        prefix_cache_bytes: bytes of keys and values its prefix cache holds now.
        rejected_total: requests its queue refused (429) since it started.
    """

    in_flight: int
    queue_depth: int
    batch_size: int = 0
    peak_batch_size: int = 0
    cancelled_total: int = 0
    cached_prompt_tokens_total: int = 0
    prefill_tokens_total: int = 0
    prefix_cache_bytes: int = 0
    rejected_total: int = 0


@runtime_checkable
class Engine(Protocol):
    """What the gateway needs from any engine."""

    name: str

    @property
    def state(self) -> EngineState:
        """The engine's current state."""
        ...

    async def start(self) -> None:
        """Load or connect; on return the engine is READY. Raises EngineDeadError on failure."""
        ...

    async def stop(self) -> None:
        """Fail or finish in-flight work, release resources; the state becomes STOPPED."""
        ...

    async def check_health(self) -> None:
        """Return if the engine can serve; raise EngineUnavailableError otherwise."""
        ...

    def load(self) -> EngineLoad:
        """Current load, cheap enough to call on every routing decision."""
        ...


@runtime_checkable
class LLMEngine(Engine, Protocol):
    """An engine that generates text for chat and completion requests.

    ``generate`` returns the whole answer; ``stream`` yields :class:`~blaze_ai.types.TextChunk`
    items as text is produced and a :class:`~blaze_ai.types.Usage` as its last item. Both raise
    :class:`~blaze_ai.errors.ClientError` for a request the model cannot take (context length),
    :class:`~blaze_ai.errors.EngineTimeoutError` once ``deadline`` passes, and another
    :class:`~blaze_ai.errors.EngineError` on failure. Closing a stream early cancels its work.
    """

    context_window: int
    """Most tokens (prompt + completion) one sequence may hold."""

    async def generate(self, req: TextRequest, deadline: Deadline) -> TextResult:
        """Generate every choice of ``req`` and return them with the usage."""
        ...

    def stream(self, req: TextRequest, deadline: Deadline) -> AsyncIterator[StreamItem]:
        """Yield text chunks as they are generated, then the usage."""
        ...


@runtime_checkable
class DiffusionEngine(Engine, Protocol):
    """An engine that generates images.

    ``generate_images`` raises :class:`~blaze_ai.errors.InvalidRequestError` for a request the
    model cannot take (a size it does not support, a prompt that names none of its classes),
    :class:`~blaze_ai.errors.EngineTimeoutError` once ``deadline`` passes, and another
    :class:`~blaze_ai.errors.EngineError` on failure.
    """

    async def generate_images(self, req: ImageRequest, deadline: Deadline) -> ImageResult:
        """Generate the ``req.n`` images of ``req``, PNG-encoded."""
        ...


AnyEngine = LLMEngine | DiffusionEngine
"""Any engine a deployment can hold."""
