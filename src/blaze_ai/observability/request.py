"""What one request did, for its metrics and its trace: filled in as it goes, read once it ended.

The HTTP layer opens a :class:`RequestRecord` when a model request arrives (``/v1/...``) and
hands it to the gateway in the routing context; the gateway notes the model it resolved, cache
hits, the usage, the images and its error, each routing attempt notes the time spent inside the
engine, and a stream notes when its content chunks came. When the response has ended, the
record is observed once (:meth:`~blaze_ai.observability.metrics.Metrics.observe_request`).

Times are :func:`time.perf_counter` readings, in seconds.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from blaze_ai.errors import BlazeError
from blaze_ai.types import TextChunk, TextResult, Usage

if TYPE_CHECKING:
    from blaze_ai.observability.tracing import RequestTrace

CLIENT_CLOSED_REQUEST = 499
"""NGINX's status for a request whose client went away before the answer (logged, never
sent)."""


class RequestRecord:
    """The observable facts of one request.

    Args:
        endpoint: the route's path (``/v1/chat/completions``), a bounded label.
        started: when the request arrived (a :func:`time.perf_counter` reading).

    Attributes:
        model: the canonical name of the model that served it ("" until resolved).
        team: the team of its API key ("" without auth).
        engine_s: seconds spent inside engine calls (every routing attempt; the one running now
            is added by :meth:`engine_time_s`).
        usage: token counts of the answer (summed over the prompts of a list); None when it
            has none (an error, an image request).
        images: images generated.
        cache_hit: the answer came from the response cache.
        error: the error that ended the request, when one did.
        first_chunk_at, last_chunk_at: when a stream's first and latest content chunks came
            out of the router (None for answers that were not streamed).
        chunks: content chunks streamed.
        trace: the request's trace, when tracing is on.

    The inter-token latency is measured per choice: the chunks of the ``n`` choices of one
    stream interleave, so the gap between two chunks of the request is not a gap between two
    tokens of an answer (with ``n=4`` it would read a quarter of the real one).
    """

    __slots__ = (
        "_choice_chunk_at",
        "_engine_since",
        "_engines_running",
        "_gaps",
        "_gaps_s",
        "cache_hit",
        "chunks",
        "endpoint",
        "engine_s",
        "error",
        "first_chunk_at",
        "images",
        "last_chunk_at",
        "model",
        "started",
        "team",
        "trace",
        "usage",
    )

    def __init__(self, endpoint: str, started: float) -> None:
        self.endpoint = endpoint
        self.started = started
        self.model = ""
        self.team = ""
        self.engine_s = 0.0
        self._engine_since: float | None = None
        self._engines_running = 0
        self.usage: Usage | None = None
        self.images = 0
        self.cache_hit = False
        self.error: BlazeError | None = None
        self.first_chunk_at: float | None = None
        self.last_chunk_at: float | None = None
        self.chunks = 0
        self.trace: RequestTrace | None = None
        self._choice_chunk_at: dict[int, float] = {}
        self._gaps = 0
        self._gaps_s = 0.0

    def engine_started(self, at: float) -> None:
        """An attempt on an engine began at ``at``. Attempts may overlap (the prompts of one
        completion request run concurrently): engine time is the union of their spans."""
        if self._engines_running == 0:
            self._engine_since = at
        self._engines_running += 1

    def engine_ended(self, at: float) -> None:
        """An attempt ended at ``at``; once none runs, the span since the first of them counts
        as engine time."""
        self._engines_running -= 1
        if self._engines_running == 0 and self._engine_since is not None:
            self.engine_s += at - self._engine_since
            self._engine_since = None

    def engine_time_s(self, now: float) -> float:
        """Seconds inside engine calls so far, the running attempt's included."""
        since = self._engine_since
        return self.engine_s + (now - since if since is not None else 0.0)

    def overhead_s(self, now: float) -> float:
        """Seconds since the request arrived that were not spent inside an engine (>= 0)."""
        return max(0.0, now - self.started - self.engine_time_s(now))

    def add_usage(self, usage: Usage) -> None:
        """Count the usage of one answer (a list of prompts has one per prompt)."""
        if self.usage is None:
            self.usage = usage
        else:
            self.usage = Usage(
                self.usage.prompt_tokens + usage.prompt_tokens,
                self.usage.completion_tokens + usage.completion_tokens,
                self.usage.cached_tokens + usage.cached_tokens,
            )

    def add_result(self, result: TextResult) -> None:
        """Count the usage of a complete answer; its finish reasons go to the trace."""
        self.add_usage(result.usage)
        if self.trace is not None:
            for choice in result.choices:
                self.trace.note_finish(choice.finish_reason.value)

    def stream_started(self) -> None:
        """A new stream of this request begins (the next prompt of a list, streamed one after
        the other): its choices' first chunks are not gaps after the previous prompt's."""
        self._choice_chunk_at.clear()

    def saw(self, item: object, now: float | None = None) -> None:
        """A stream item went out at ``now`` (default: the time now): a content chunk's time
        is noted, and its gap since the previous chunk of its choice (a choice's finish reason
        goes to the trace); a usage is counted."""
        if isinstance(item, TextChunk):
            if item.finish_reason is not None and self.trace is not None:
                self.trace.note_finish(item.finish_reason.value)
            if item.text:
                at = time.perf_counter() if now is None else now
                if self.first_chunk_at is None:
                    self.first_chunk_at = at
                self.last_chunk_at = at
                self.chunks += 1
                previous = self._choice_chunk_at.get(item.index)
                if previous is not None:
                    self._gaps += 1
                    self._gaps_s += at - previous
                self._choice_chunk_at[item.index] = at
        elif isinstance(item, Usage):
            self.add_usage(item)

    def fail(self, error: BlazeError) -> None:
        """The request ended with ``error`` (the first one noted is kept)."""
        if self.error is None:
            self.error = error

    def time_to_first_chunk_s(self) -> float | None:
        """Seconds from arrival to the first content chunk of a stream an engine answered
        (None for other answers, cache hits included)."""
        if self.first_chunk_at is None or self.cache_hit:
            return None
        return self.first_chunk_at - self.started

    def inter_chunk_s(self) -> float | None:
        """Mean seconds between two consecutive content chunks of the same choice of a stream
        an engine answered (None without two chunks of one choice, or for a cache hit)."""
        if self._gaps == 0 or self.cache_hit:
            return None
        return self._gaps_s / self._gaps


class NoteErrors:
    """A context manager that notes a :class:`~blaze_ai.errors.BlazeError` leaving its block
    on ``record`` (nothing without a record) and lets it go on. A plain class, not a
    ``@contextmanager`` generator: it is on every request's path, also inside streams."""

    __slots__ = ("_record",)

    def __init__(self, record: RequestRecord | None) -> None:
        self._record = record

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._record is not None and isinstance(exc, BlazeError):
            self._record.fail(exc)
