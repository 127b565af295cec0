"""One generation job: the bridge between the batching thread that decodes a request's sequences
and the event loop that streams their text to a client.

The batching thread hands each new token to :meth:`GenerationJob.add_token`; text chunks travel to
the loop through an :class:`asyncio.Queue` fed with ``call_soon_threadsafe``. Cancelling the job
(client gone, deadline passed, engine stopping) makes the batching thread drop its sequences
before the next decoding step.

A request's ``n`` sequences need not run at once: the scheduler starts them a group at a time
(:meth:`GenerationJob.take_sequences`), so one request cannot hold the whole batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Hashable, Sequence
from typing import Any

from blaze_ai.engines.llm.detokenizer import Decode, SequenceTracker
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import FinishReason, SamplingParams, TextChunk, Usage

_END = object()


class GenerationJob:
    """State of one request's generation, shared by the batching thread and the event loop.

    Args:
        loop: the event loop that consumes the job's events.
        prompt_ids: the prompt's token ids.
        decode: token ids -> text.
        params: the request's sampling parameters (``n`` sequences, ``stop``, ``seed``...).
        eos_token_ids, max_tokens: see :class:`SequenceTracker`.
        deadline: when the request times out.
        owner: the API request the job belongs to (its ``request_id``: the prompts of one
            completions list are jobs of one owner, sharing one request's part of the batch);
            None: the job alone.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        prompt_ids: Sequence[int],
        decode: Decode,
        params: SamplingParams,
        eos_token_ids: frozenset[int],
        max_tokens: int,
        deadline: Deadline,
        owner: Hashable | None = None,
    ) -> None:
        self._loop = loop
        self.owner: Hashable = owner if owner else object()
        self.prompt_ids = list(prompt_ids)
        self.params = params
        self.max_tokens = max_tokens
        self.deadline = deadline
        self.trackers = [
            SequenceTracker(
                decode, stop=params.stop, eos_token_ids=eos_token_ids, max_tokens=max_tokens
            )
            for _ in range(params.n)
        ]
        self.started = 0  # sequences started so far (indices below it are running or done)
        self.events: asyncio.Queue[Any] = asyncio.Queue()
        self._cancelled = threading.Event()
        self.ended = False
        self.cached_tokens = 0  # prompt tokens reused from the prefix cache
        self.prefilled: Any = None  # a PrefixHit: the prompt's start, run by an earlier chunk

    # --- event loop side -------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop generating before the next decoding step (thread-safe, idempotent)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled.is_set()

    # --- batching thread side --------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once every sequence has finished."""
        return all(tracker.done for tracker in self.trackers)

    @property
    def unstarted(self) -> int:
        """Sequences not started yet."""
        return len(self.trackers) - self.started

    def take_sequences(self, limit: int) -> list[int]:
        """Mark the next ``limit`` (at most) unstarted sequences started; return their indices."""
        first = self.started
        self.started = min(len(self.trackers), first + limit)
        return list(range(first, self.started))

    def add_token(self, index: int, token: int) -> None:
        """Record sequence ``index``'s next token and stream the text it makes safe to send."""
        tracker = self.trackers[index]
        if tracker.done:
            return
        delta = tracker.add_token(token)
        if delta or tracker.done:
            self.emit(TextChunk(index=index, text=delta, finish_reason=tracker.finish_reason))

    def finish(self) -> None:
        """Close unfinished sequences (context window reached), send the usage and the end."""
        for index, tracker in enumerate(self.trackers):
            if not tracker.done:
                delta = tracker.finish(FinishReason.LENGTH)
                self.emit(TextChunk(index=index, text=delta, finish_reason=tracker.finish_reason))
        completion = sum(tracker.completion_tokens for tracker in self.trackers)
        self.emit(
            Usage(
                prompt_tokens=len(self.prompt_ids),
                completion_tokens=completion,
                cached_tokens=self.cached_tokens,
            )
        )
        self._end()

    def fail(self, error: BaseException) -> None:
        """Send ``error`` to the consumer, where it is raised, and end the stream (once)."""
        if not self.ended:
            self.emit(error)
            self._end()

    def close(self) -> None:
        """End the stream without a usage (the consumer has gone)."""
        self._end()

    def emit(self, item: object) -> None:
        """Hand ``item`` to the event loop (thread-safe); dropped if the loop has closed."""
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self.events.put_nowait, item)

    def _end(self) -> None:
        if not self.ended:
            self.ended = True
            self.emit(_END)


def is_end(item: object) -> bool:
    """True for the marker that closes a job's event stream."""
    return item is _END
