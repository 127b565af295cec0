"""One generation job: the bridge between the worker thread that runs ``generate`` and the
event loop that streams its text to a client.

The worker thread calls the job's streamer (``put``) after every decoding step and its stopping
criterion before the next one; text chunks travel to the loop through an :class:`asyncio.Queue`
fed with ``call_soon_threadsafe``. Cancelling the job (client gone, deadline passed, engine
stopping) makes the stopping criterion end ``generate`` at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from blaze_ai.engines.text_stream import Decode, SequenceTracker
from blaze_ai.types import FinishReason, TextChunk, Usage

_END = object()


class GenerationJob(BaseStreamer, StoppingCriteria):
    """State of one request's generation, shared by the worker thread and the event loop.

    Args:
        loop: the event loop that consumes the job's events.
        prompt_ids: the prompt's token ids.
        decode: token ids -> text.
        n: sequences generated for the prompt (one tracker each).
        stop, eos_token_ids, max_tokens: see :class:`SequenceTracker`.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        prompt_ids: Sequence[int],
        decode: Decode,
        n: int,
        stop: Sequence[str],
        eos_token_ids: frozenset[int],
        max_tokens: int,
    ) -> None:
        self._loop = loop
        self.prompt_ids = list(prompt_ids)
        self.max_tokens = max_tokens
        self.trackers = [
            SequenceTracker(decode, stop=stop, eos_token_ids=eos_token_ids, max_tokens=max_tokens)
            for _ in range(n)
        ]
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.started = False
        self._prompt_seen = False

    # --- event loop side -------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating at the next decoding step (thread-safe, idempotent)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled.is_set()

    # --- worker thread side ----------------------------------------------------------------

    def put(self, value: torch.Tensor) -> None:
        """Streamer hook: called by ``generate`` with the prompt, then with each step's tokens."""
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        tokens = value.reshape(-1).tolist()
        for index, (tracker, token) in enumerate(zip(self.trackers, tokens, strict=False)):
            if tracker.done:
                continue
            delta = tracker.add_token(int(token))
            if delta or tracker.done:
                self.emit(TextChunk(index=index, text=delta, finish_reason=tracker.finish_reason))

    def end(self) -> None:
        """Streamer hook: ``generate`` has finished."""

    def __call__(
        self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        """Stopping criterion: one bool per row, True where that row is done."""
        cancelled = self._cancelled.is_set()
        done = [cancelled or tracker.done for tracker in self.trackers]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def finish(self) -> None:
        """After ``generate``: close unfinished rows (context window reached), send the usage."""
        for index, tracker in enumerate(self.trackers):
            if not tracker.done:
                delta = tracker.finish(FinishReason.LENGTH)
                self.emit(TextChunk(index=index, text=delta, finish_reason=tracker.finish_reason))
        completion = sum(tracker.completion_tokens for tracker in self.trackers)
        self.emit(Usage(prompt_tokens=len(self.prompt_ids), completion_tokens=completion))
        self.emit(_END)

    def fail(self, error: BaseException) -> None:
        """Send ``error`` to the consumer; it is raised there."""
        self.emit(error)
        self.emit(_END)

    def emit(self, item: object) -> None:
        """Hand ``item`` to the event loop (thread-safe); dropped if the loop has closed."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self.events.put_nowait, item)


def is_end(item: object) -> bool:
    """True for the marker that closes a job's event stream."""
    return item is _END
