"""The running batch of a causal LM: prefill a request, decode one step for every sequence.

Iteration-level ("continuous") batching as in Orca (Yu et al., OSDI 2022) and vLLM: the batch is
re-formed between two decoding steps, so a request joins as soon as its prompt is prefilled and
leaves as soon as its sequences finish, without waiting for the others.

- :meth:`DecodeBatch.prefill` runs the prompts of the requests admitted together in one forward
  pass (packed: :class:`~blaze_ai.engines.llm.prefill.PromptRunner`), each after the longest
  prefix of it that the :class:`~blaze_ai.engines.llm.prefix_cache.PrefixCache` holds, or a chunk of
  one long prompt; it samples the first token of each sequence the scheduler starts (all of a
  request's ``n``, or a group of them) and adds their cache rows to the batch
  (:class:`~blaze_ai.engines.llm.kv_cache.BatchKVCache`). A request whose group finished with
  sequences still to start is handed back (:meth:`DecodeBatch.take_parked`) to wait its turn.
- :meth:`DecodeBatch.step` feeds every sequence's last token through the model once, with the
  left-padding attention mask and each sequence's own position ids, and hands each request's rows of
  logits to its :class:`~blaze_ai.engines.llm.sampler.RequestSampler`. A request whose sampling
  fails gets the error; the others go on.
- :meth:`DecodeBatch.remove` drops requests (cancelled, timed out) before the next step.

This module runs on the batching thread only; it is not thread-safe.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from blaze_ai.engines.llm.kv_cache import BatchKVCache, new_cache
from blaze_ai.engines.llm.prefill import PromptRunner
from blaze_ai.engines.llm.prefix_cache import LayerStates, PrefixCache, PrefixHit
from blaze_ai.engines.llm.request import GenerationJob
from blaze_ai.engines.llm.sampler import RequestSampler
from blaze_ai.errors import BlazeError, EngineGenerationError

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Running:
    """A request in the batch: its sequences still decoding occupy consecutive batch rows."""

    job: GenerationJob
    sampler: RequestSampler
    sequences: list[int]  # the job's sequence indices still in the batch, in row order
    last_tokens: list[int]  # the last token of each of those sequences
    position: int  # position id of the token fed at the next step
    failed: bool = False
    error: BlazeError | None = None  # sent once the batch has shrunk

    def unfinished(self) -> list[int]:
        """Row offsets (within this request) of the sequences that have not finished."""
        trackers = self.job.trackers
        return [i for i, s in enumerate(self.sequences) if not trackers[s].done]


class DecodeBatch:
    """The sequences decoded together, their cache and the requests they belong to.

    Args:
        model: a ``transformers`` causal LM in eval mode (called under ``torch.inference_mode``).
        device: the model's device.
        prefix_cache: where prompts' keys and values are kept for reuse (none by default).

    Attributes:
        prefill_tokens_total: prompt tokens given to the model by prefills since start (those
            found in the prefix cache or run by an earlier chunk are not counted again).
    """

    def __init__(
        self, model: Any, *, device: torch.device, prefix_cache: PrefixCache | None = None
    ) -> None:
        self._model = model
        self._device = device
        self._runner = PromptRunner(model, device=device)
        self._prefix = prefix_cache if prefix_cache is not None else PrefixCache(0)
        self._kv = BatchKVCache(device)
        self._running: list[_Running] = []
        self._parked: list[GenerationJob] = []
        self.prefill_tokens_total = 0

    @property
    def rows(self) -> int:
        """Sequences in the batch."""
        return self._kv.rows

    def rows_by_owner(self) -> Counter[Hashable]:
        """Sequences in the batch per owner (API request) of their jobs."""
        rows: Counter[Hashable] = Counter()
        for r in self._running:
            rows[r.job.owner] += len(r.sequences)
        return rows

    @property
    def jobs(self) -> list[GenerationJob]:
        """Requests in the batch, in row order."""
        return [r.job for r in self._running]

    def prefill_cost(self, job: GenerationJob) -> int:
        """Prompt tokens of ``job`` that a prefill would run now (not in the prefix cache, not
        run by an earlier chunk)."""
        if job.prefilled is not None:
            return len(job.prompt_ids) - int(job.prefilled.tokens)
        return len(job.prompt_ids) - self._prefix.match_length(job.prompt_ids)

    def take_parked(self) -> list[GenerationJob]:
        """The requests whose started sequences all finished while others have yet to start;
        the scheduler queues them again."""
        parked, self._parked = self._parked, []
        return parked

    def prefill(
        self,
        jobs: Sequence[GenerationJob],
        *,
        chunk: int | None = None,
        sequences: Sequence[int] | None = None,
    ) -> bool:
        """Run the prompts of ``jobs`` in one forward pass, stream their first tokens, and add
        their unfinished sequences to the batch.

        ``sequences[i]`` is how many of ``jobs[i]``'s unstarted sequences start (default: all
        of them).

        With ``chunk`` (one job only), at most ``chunk`` more tokens of its prompt run (chunked
        prefill, as in Sarathi-Serve, Agrawal et al., OSDI 2024, and vLLM): if some remain, the
        job keeps the states computed so far and nothing is sampled.

        A request whose sampling fails gets the error; the others go on.

        Returns:
            True when every prompt ran to its end; False when the chunked job has more to run.

        Raises:
            Exception: the model failed (the batch is unchanged; no request was answered).
        """
        hits = [self._start_of(job) for job in jobs]
        if len(jobs) == 1:
            job = jobs[0]
            end = len(job.prompt_ids)
            start = hits[0].tokens if hits[0] is not None else 0
            if chunk is not None:
                end = min(end, start + chunk)
            logits, layers = self._runner.run_one(job.prompt_ids, hits[0], end)
            self.prefill_tokens_total += end - start
            states = [layers]
            if end < len(job.prompt_ids):
                job.prefilled = PrefixHit(end, tuple(layers))
                return False
            job.prefilled = None
        else:
            logits, states = self._run_many(jobs, hits)
        joining: list[tuple[_Running, list[LayerStates]]] = []
        for index, job in enumerate(jobs):
            self._prefix.insert(job.prompt_ids, states[index])
            count = sequences[index] if sequences is not None else job.unstarted
            running = self._first_tokens(job, logits[index : index + 1], count)
            if running is not None:
                joining.append((running, states[index]))
        if joining:
            self._join(joining)
        self._compact()
        return True

    def _run_many(
        self, jobs: Sequence[GenerationJob], hits: Sequence[PrefixHit | None]
    ) -> tuple[torch.Tensor, list[list[LayerStates]]]:
        """Run the whole prompts of several ``jobs`` (packed in one pass when the model allows)
        after their ``hits``: the last logits of each and its layers' states."""
        if self._runner.packing:
            logits, states = self._runner.run_packed([job.prompt_ids for job in jobs], hits)
        else:
            ran = [
                self._runner.run_one(job.prompt_ids, hit, len(job.prompt_ids))
                for job, hit in zip(jobs, hits, strict=True)
            ]
            logits, states = torch.cat([r[0] for r in ran]), [r[1] for r in ran]
        self.prefill_tokens_total += sum(
            len(job.prompt_ids) - (hit.tokens if hit is not None else 0)
            for job, hit in zip(jobs, hits, strict=True)
        )
        for job in jobs:
            job.prefilled = None
        return logits, states

    def _start_of(self, job: GenerationJob) -> PrefixHit | None:
        """What of ``job``'s prompt needs no computing: its earlier chunks, else the longest
        prefix in the prefix cache (counted in the job's ``cached_tokens``)."""
        if job.prefilled is not None:
            return job.prefilled
        hit = self._prefix.lookup(job.prompt_ids)
        if job.started == 0:  # a later group of the request reuses what its first one cached
            job.cached_tokens = hit.tokens if hit is not None else 0
        return hit

    def _first_tokens(
        self, job: GenerationJob, logits: torch.Tensor, count: int
    ) -> _Running | None:
        """Sample and stream the first tokens of ``count`` more of ``job``'s sequences; their
        running state if they go on decoding."""
        indices = job.take_sequences(count)
        n = len(indices)
        try:
            sampler = RequestSampler(
                job.params,
                rows=n,
                vocab_size=logits.shape[-1],
                device=self._device,
                stream=indices[0],
            )
            tokens = sampler.next_tokens(logits.expand(n, -1)).tolist()
        except BlazeError as exc:
            job.fail(exc)
            return None
        except Exception as exc:
            logger.exception("sampling_failed")
            job.fail(EngineGenerationError(f"sampling failed: {type(exc).__name__}"))
            return None
        for index, token in zip(indices, tokens, strict=True):
            job.add_token(index, token)
        running = _Running(job, sampler, indices, tokens, len(job.prompt_ids))
        if not running.unfinished():
            self._end(job)
            return None
        return running

    def _end(self, job: GenerationJob) -> None:
        """Its running sequences finished: the request ends, or waits to start more."""
        if job.unstarted and not job.ended:
            self._parked.append(job)
        else:
            job.finish()

    def _join(self, joining: Sequence[tuple[_Running, list[LayerStates]]]) -> None:
        """Add the rows of freshly prefilled requests (one per sequence) to the batch."""
        lengths = [len(r.job.prompt_ids) for r, _ in joining for _ in r.sequences]
        columns = max(lengths)
        layers: list[LayerStates] = []
        for i in range(len(joining[0][1])):
            pair = []
            for kv in (0, 1):
                sample = joining[0][1][i][kv]
                heads, dim = sample.shape[1], sample.shape[3]
                out = sample.new_zeros(len(lengths), heads, columns, dim)
                row = 0
                for running, states in joining:
                    tensor = states[i][kv]
                    rows = len(running.sequences)
                    out[row : row + rows, :, columns - tensor.shape[2] :] = tensor
                    row += rows
                pair.append(out)
            layers.append((pair[0], pair[1]))
        self._kv.join(new_cache(layers), lengths)
        self._running.extend(r for r, _ in joining)

    def step(self) -> None:
        """Decode one token for every sequence; finished sequences and requests leave.

        Raises:
            Exception: the forward pass failed (every request in the batch is affected).
        """
        tokens = [t for r in self._running for t in r.last_tokens]
        positions = [r.position for r in self._running for _ in r.sequences]
        mask = self._kv.extend_mask()
        output = self._model(
            input_ids=torch.tensor(tokens, device=self._device).unsqueeze(1),
            attention_mask=mask,
            position_ids=torch.tensor(positions, device=self._device).unsqueeze(1),
            use_cache=True,
            **{self._runner.cache_kwarg: self._kv.cache},
        )
        self._dispatch(output.logits[:, -1, :].float())
        self._compact()

    def remove(self, should_remove: Callable[[GenerationJob], bool]) -> list[GenerationJob]:
        """Take out the requests for which ``should_remove`` is true; return them."""
        removed = [r.job for r in self._running if should_remove(r.job)]
        if removed:
            for r in self._running:
                r.failed = r.failed or r.job in removed
            self._compact()
        return removed

    @property
    def prefix_cache(self) -> PrefixCache:
        """The prompts' keys and values kept for reuse."""
        return self._prefix

    def fail_all(self, error: BlazeError) -> None:
        """End every request with ``error`` and empty the batch."""
        for job in [*(r.job for r in self._running), *self.take_parked()]:
            job.fail(error)
        self._running = []
        self._kv = BatchKVCache(self._device)

    def _dispatch(self, logits: torch.Tensor) -> None:
        greedy: list[int] | None = None
        offset = 0
        for r in self._running:
            rows = len(r.sequences)
            try:
                if r.sampler.plain_greedy:
                    greedy = greedy if greedy is not None else logits.argmax(dim=-1).tolist()
                    tokens = greedy[offset : offset + rows]
                else:
                    tokens = r.sampler.next_tokens(logits[offset : offset + rows]).tolist()
            except BlazeError as exc:
                self._fail(r, exc)
            except Exception as exc:
                logger.exception("sampling_failed")
                self._fail(r, EngineGenerationError(f"sampling failed: {type(exc).__name__}"))
            else:
                for sequence, token in zip(r.sequences, tokens, strict=True):
                    r.job.add_token(sequence, token)
                r.last_tokens = tokens
                r.position += 1
            offset += rows

    @staticmethod
    def _fail(running: _Running, error: BlazeError) -> None:
        running.failed = True
        running.error = error

    def _compact(self) -> None:
        """Drop finished sequences, finished or failed requests, and their cache rows."""
        keep_rows: list[int] = []
        kept: list[_Running] = []
        finished: list[_Running] = []
        offset = 0
        for r in self._running:
            rows_before = len(r.sequences)
            local = [] if r.failed else r.unfinished()
            if local:
                keep_rows.extend(offset + i for i in local)
                if len(local) < rows_before:
                    r.sequences = [r.sequences[i] for i in local]
                    r.last_tokens = [r.last_tokens[i] for i in local]
                    r.sampler.keep(local)
                kept.append(r)
            elif not r.failed or r.error is not None:
                finished.append(r)
            offset += rows_before
        self._running = kept
        if len(keep_rows) != self._kv.rows:
            self._kv.keep(keep_rows)
        for r in finished:  # after the batch shrank: a client that sees the end sees it smaller
            if r.error is not None:
                r.job.fail(r.error)
            else:
                self._end(r.job)
