"""The batching thread of an LLM engine: a bounded queue in front of a continuously running batch.

Requests are submitted from the event loop (:meth:`BatchScheduler.submit`) into a FIFO queue.
One thread loops over iterations; each iteration

1. removes from the queue and the batch the requests that were cancelled (the client went away)
   or whose deadline passed, so their rows are free before the next step;
2. admits queued requests in arrival order while their sequences fit in ``max_batch_size``
   and their prompt tokens not found in the prefix cache fit in ``max_prefill_tokens``. A
   request starts at most ``max_sequences_per_request`` of its ``n`` sequences at once; when
   they have finished, it queues again at the back for the next ones, so a request with a
   large ``n`` takes turns with the others instead of holding the batch (the batch never
   holds more than ``max_batch_size`` sequences). Their prompts are prefilled together
   in one forward pass and their first tokens streamed at once, so running requests keep
   decoding during a burst of arrivals; a prompt over the budget runs alone, a chunk of
   ``max_prefill_tokens`` tokens per iteration, and goes back to the head of the queue until
   its last chunk has run (chunked prefill);
3. decodes one step for every sequence of the batch.

Backpressure: a request is refused at once with :class:`~blaze_ai.errors.BackPressureError` (429,
``Retry-After``) when ``max_queue`` requests already wait beyond the batch's free rows; the queue
never grows without bound. A failure of one request's sampling fails only that request; a failed
forward pass fails the requests of that batch, and the loop goes on with the next ones.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import torch

from blaze_ai.config.deployments import request_share
from blaze_ai.engines.llm.batch import DecodeBatch
from blaze_ai.engines.llm.request import GenerationJob
from blaze_ai.errors import (
    BackPressureError,
    BlazeError,
    EngineGenerationError,
    EngineTimeoutError,
    EngineUnavailableError,
)

logger = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0
"""``Retry-After`` sent with a refused request, in seconds."""


@dataclass(frozen=True, slots=True)
class BatchStats:
    """A snapshot of the scheduler's queue, batch and counters.

    Attributes:
        queue_depth: requests waiting to join the batch.
        running: requests in the batch.
        batch_size: sequences in the batch (a request has ``n`` of them).
        peak_batch_size: most sequences the batch has held at once since start.
        steps_total: decoding steps run since start.
        cancelled_total: requests removed early (cancelled or timed out), freeing their rows.
        rejected_total: requests refused because the queue was full.
        cached_prompt_tokens_total: prompt tokens reused from the prefix cache, not recomputed.
        prefill_tokens_total: prompt tokens run through the model by prefills.
        prefix_cache_bytes: bytes the prefix cache holds now.
    """

    queue_depth: int
    running: int
    batch_size: int
    peak_batch_size: int
    steps_total: int
    cancelled_total: int
    rejected_total: int
    cached_prompt_tokens_total: int
    prefill_tokens_total: int = 0
    prefix_cache_bytes: int = 0


class BatchScheduler:
    """Continuous batching of one model on one thread.

    Args:
        batch: the model's :class:`DecodeBatch`, used only by the scheduler's thread.
        name: engine name, for logs and the thread's name.
        max_batch_size: most sequences decoded together (>= 1).
        max_sequences_per_request: most sequences of one request in the batch at once
            (1 to ``max_batch_size``; None: half the batch, at least 1).
        max_queue: most requests waiting beyond the batch's free rows (>= 0).
        max_prefill_tokens: most uncached prompt tokens prefilled per iteration (>= 1); a
            longer prompt runs alone, this many tokens per iteration (chunked prefill).
    """

    def __init__(
        self,
        batch: DecodeBatch,
        *,
        name: str,
        max_batch_size: int,
        max_queue: int,
        max_prefill_tokens: int = 512,
        max_sequences_per_request: int | None = None,
    ) -> None:
        per_request = request_share(max_batch_size, max_sequences_per_request)
        if max_batch_size < 1 or max_queue < 0 or max_prefill_tokens < 1:
            raise ValueError(
                "max_batch_size and max_prefill_tokens must be >= 1 and max_queue >= 0"
            )
        if not 1 <= per_request <= max_batch_size:
            raise ValueError("max_sequences_per_request must be between 1 and max_batch_size")
        self._per_request = per_request
        self._batch = batch
        self._name = name
        self._max_batch_size = max_batch_size
        self._max_queue = max_queue
        self._prefill_budget = max_prefill_tokens
        self._waiting: deque[GenerationJob] = deque()
        self._admitting = 0
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._steps = 0
        self._peak = 0
        self._cancelled = 0
        self._rejected = 0

    # --- event loop side -------------------------------------------------------------------

    def start(self) -> None:
        """Start the batching thread."""
        self._thread = threading.Thread(target=self._run, name=f"blaze-{self._name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (blocking: run it in a thread); pending requests fail with 503."""
        with self._lock:
            self._stopping = True
            self._wakeup.notify()
        if self._thread is not None:
            self._thread.join()

    def submit(self, job: GenerationJob) -> None:
        """Queue ``job``; the batching thread takes it at its next iteration.

        Raises:
            BackPressureError: ``max_queue`` requests already wait beyond the free rows.
            EngineUnavailableError: the scheduler is stopping.
        """
        with self._lock:
            if self._stopping:
                raise EngineUnavailableError(f"engine {self._name} is stopping")
            free_rows = max(0, self._max_batch_size - self._batch.rows)
            if len(self._waiting) >= self._max_queue + free_rows:
                self._rejected += 1
                raise BackPressureError(
                    f"engine {self._name} is at capacity ({len(self._waiting)} requests queued)",
                    retry_after_s=RETRY_AFTER_S,
                )
            self._waiting.append(job)
            self._wakeup.notify()

    def stats(self) -> BatchStats:
        """The current queue depth, batch size and counters (cheap; any thread)."""
        waiting = len(self._waiting)
        running = len(self._batch.jobs) + self._admitting
        prefix = self._batch.prefix_cache.stats()
        return BatchStats(
            queue_depth=waiting,
            running=running,
            batch_size=self._batch.rows,
            peak_batch_size=self._peak,
            steps_total=self._steps,
            cancelled_total=self._cancelled,
            rejected_total=self._rejected,
            cached_prompt_tokens_total=prefix.reused_tokens,
            prefill_tokens_total=self._batch.prefill_tokens_total,
            prefix_cache_bytes=prefix.bytes,
        )

    # --- batching thread -------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while self._wait_for_work():
                try:
                    self._iteration()
                except Exception as exc:
                    logger.exception("batch_step_failed", extra={"engine": self._name})
                    error = EngineGenerationError(f"generation failed: {type(exc).__name__}")
                    self._batch.fail_all(error)
        self._fail_everything(EngineUnavailableError(f"engine {self._name} stopped"))

    def _wait_for_work(self) -> bool:
        """Block until there is work; False once stopping."""
        with self._lock:
            while not self._stopping and not self._waiting and not self._batch.rows:
                self._wakeup.wait()
            return not self._stopping

    def _iteration(self) -> None:
        self._drop_abandoned()
        self._admit()
        self._requeue_parked()
        if self._batch.rows:
            self._peak = max(self._peak, self._batch.rows)
            self._batch.step()
            self._steps += 1
            self._requeue_parked()

    def _requeue_parked(self) -> None:
        """Queue again, at the back, the requests whose running sequences finished while some
        of their ``n`` have yet to start: they wait their turn behind later arrivals."""
        parked = self._batch.take_parked()
        if parked:
            with self._lock:
                self._waiting.extend(parked)

    def _drop_abandoned(self) -> None:
        with self._lock:
            queued = [job for job in self._waiting if _abandoned(job)]
            for job in queued:
                self._waiting.remove(job)
        for job in [*queued, *self._batch.remove(_abandoned)]:
            self._cancelled += 1
            _end_abandoned(job)

    def _admit(self) -> None:
        jobs, chunk = self._next_group()
        if not jobs:
            return
        started = time.perf_counter()
        sequences = [min(job.unstarted, self._per_request) for job in jobs]
        try:
            if not self._batch.prefill(jobs, chunk=chunk, sequences=sequences):
                with self._lock:  # the rest of its prompt runs first at the next iteration
                    self._waiting.appendleft(jobs[0])
            logger.debug(
                "prefill",
                extra={
                    "engine": self._name,
                    "requests": len(jobs),
                    "prompt_tokens": sum(len(job.prompt_ids) for job in jobs),
                    "seconds": round(time.perf_counter() - started, 4),
                },
            )
        except Exception as exc:
            logger.exception("prefill_failed", extra={"engine": self._name})
            error = EngineGenerationError(f"generation failed: {type(exc).__name__}")
            for job in jobs:
                job.fail(error)
        finally:
            self._admitting = 0

    def _next_group(self) -> tuple[list[GenerationJob], int | None]:
        """Pop, in order, the queued requests to prefill together in this iteration, and the
        chunk of the first one's prompt to run when it alone is over the budget.

        They must fit in the batch's free rows (each with at most ``max_sequences_per_request``
        of its sequences) and their uncached prompt tokens within
        ``max_prefill_tokens``, as in vLLM's ``max_num_batched_tokens`` and TGI's
        ``max_batch_prefill_tokens``: the budget bounds how long running streams wait for the
        next step, and lets the first arrivals of a burst stream while the later ones are
        prefilled. A longer prompt runs alone, ``max_prefill_tokens`` at a time, one chunk per
        iteration (chunked prefill). A job whose API request (its ``owner``: the prompts of one
        completions list) already has its share of the batch is passed over, keeping its
        place, so the later requests behind it start.
        """
        if not self._waiting:  # most iterations: nothing to admit
            return [], None
        group: list[GenerationJob] = []
        rows = self._batch.rows
        owned = self._batch.rows_by_owner()
        tokens = 0
        with self._lock:
            for job in list(self._waiting):
                if _abandoned(job):
                    self._cancelled += 1
                    self._waiting.remove(job)
                    _end_abandoned(job)
                    continue
                needed = min(job.unstarted, self._per_request)
                if owned[job.owner] + needed > self._per_request:
                    continue  # its request holds its share: the next one's turn
                cost = self._batch.prefill_cost(job)
                if (group and tokens + cost > self._prefill_budget) or (
                    rows + needed > self._max_batch_size
                ):
                    break
                self._waiting.remove(job)
                group.append(job)
                owned[job.owner] += needed
                rows += needed
                tokens += cost
            self._admitting = len(group)
        chunk = self._prefill_budget if len(group) == 1 and tokens > self._prefill_budget else None
        return group, chunk

    def _fail_everything(self, error: BlazeError) -> None:
        with self._lock:
            waiting, self._waiting = list(self._waiting), deque()
        for job in waiting:
            job.fail(error)
        self._batch.fail_all(error)


def _abandoned(job: GenerationJob) -> bool:
    return job.cancelled or job.deadline.expired()


def _end_abandoned(job: GenerationJob) -> None:
    if job.cancelled:
        job.close()
    else:
        job.fail(EngineTimeoutError("the request's deadline passed during generation"))
