"""The batching thread of an LLM engine: a bounded queue in front of a continuously running batch.

Requests are submitted from the event loop (:meth:`BatchScheduler.submit`) into a FIFO queue.
One thread loops over iterations; each iteration

1. removes from the queue and the batch the requests that were cancelled (the client went away)
   or whose deadline passed, so their rows are free before the next step;
2. admits queued requests in order while their sequences fit in ``max_batch_size`` (a request
   with more sequences than that runs once the batch is empty), prefilling each alone and
   streaming its first token at once, up to ``prefill_tokens_per_step`` prompt tokens per
   iteration so that running requests keep decoding during a burst of arrivals;
3. decodes one step for every sequence of the batch.

Backpressure: a request is refused at once with :class:`~blaze_ai.errors.BackPressureError` (429,
``Retry-After``) when ``max_queue`` requests already wait beyond the batch's free rows; the queue
never grows without bound. A failure of one request's sampling fails only that request; a failed
forward pass fails the requests of that batch, and the loop goes on with the next ones.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass

import torch

from blaze_ai.engines.llm_batch import DecodeBatch
from blaze_ai.engines.llm_job import GenerationJob
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
        steps_total: decoding steps run since start.
        cancelled_total: requests removed early (cancelled or timed out), freeing their rows.
        rejected_total: requests refused because the queue was full.
    """

    queue_depth: int
    running: int
    batch_size: int
    steps_total: int
    cancelled_total: int
    rejected_total: int


class BatchScheduler:
    """Continuous batching of one model on one thread.

    Args:
        batch: the model's :class:`DecodeBatch`, used only by the scheduler's thread.
        name: engine name, for logs and the thread's name.
        max_batch_size: most sequences decoded together (>= 1).
        max_queue: most requests waiting beyond the batch's free rows (>= 0).
        prefill_tokens_per_step: prompt tokens prefilled per iteration before the next step.
    """

    def __init__(
        self,
        batch: DecodeBatch,
        *,
        name: str,
        max_batch_size: int,
        max_queue: int,
        prefill_tokens_per_step: int = 512,
    ) -> None:
        if max_batch_size < 1 or max_queue < 0:
            raise ValueError("max_batch_size must be >= 1 and max_queue >= 0")
        self._batch = batch
        self._name = name
        self._max_batch_size = max_batch_size
        self._max_queue = max_queue
        self._prefill_budget = prefill_tokens_per_step
        self._waiting: deque[GenerationJob] = deque()
        self._admitting = 0
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._steps = 0
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
        return BatchStats(
            queue_depth=waiting,
            running=running,
            batch_size=self._batch.rows,
            steps_total=self._steps,
            cancelled_total=self._cancelled,
            rejected_total=self._rejected,
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
        if self._batch.rows:
            self._batch.step()
            self._steps += 1

    def _drop_abandoned(self) -> None:
        with self._lock:
            queued = [job for job in self._waiting if _abandoned(job)]
            for job in queued:
                self._waiting.remove(job)
        for job in [*queued, *self._batch.remove(_abandoned)]:
            self._cancelled += 1
            _end_abandoned(job)

    def _admit(self) -> None:
        budget = self._prefill_budget
        while budget > 0:
            job = self._next_fitting()
            if job is None:
                return
            try:
                self._batch.prefill(job)
            except BlazeError as exc:
                job.fail(exc)
            except Exception as exc:
                logger.exception("prefill_failed", extra={"engine": self._name})
                job.fail(EngineGenerationError(f"generation failed: {type(exc).__name__}"))
            finally:
                self._admitting = 0
            budget -= len(job.prompt_ids)

    def _next_fitting(self) -> GenerationJob | None:
        """Pop the head of the queue if its sequences fit in the batch now."""
        with self._lock:
            while self._waiting and _abandoned(self._waiting[0]):
                self._cancelled += 1
                _end_abandoned(self._waiting.popleft())
            if not self._waiting:
                return None
            rows = self._batch.rows
            if rows and rows + len(self._waiting[0].trackers) > self._max_batch_size:
                return None
            self._admitting = 1
            return self._waiting.popleft()

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
