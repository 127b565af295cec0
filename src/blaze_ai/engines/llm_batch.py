"""The running batch of a causal LM: prefill a request, decode one step for every sequence.

Iteration-level ("continuous") batching as in Orca (Yu et al., OSDI 2022) and vLLM: the batch is
re-formed between two decoding steps, so a request joins as soon as its prompt is prefilled and
leaves as soon as its sequences finish, without waiting for the others.

- :meth:`DecodeBatch.prefill` runs one request's prompt alone (batch of one, no padding, so its
  first token is exactly what it would be alone), samples the first token of each of its ``n``
  sequences and adds their cache rows to the batch
  (:class:`~blaze_ai.engines.kv_cache.BatchKVCache`).
- :meth:`DecodeBatch.step` feeds every sequence's last token through the model once, with the
  left-padding attention mask and each sequence's own position ids, and hands each request's rows of
  logits to its :class:`~blaze_ai.engines.llm_sampling.RequestSampler`. A request whose sampling
  fails gets the error; the others go on.
- :meth:`DecodeBatch.remove` drops requests (cancelled, timed out) before the next step.

This module runs on the batching thread only; it is not thread-safe.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from blaze_ai.engines.kv_cache import BatchKVCache, GrowableLayer, new_cache
from blaze_ai.engines.llm_job import GenerationJob
from blaze_ai.engines.llm_sampling import RequestSampler
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
    """

    def __init__(self, model: Any, *, device: torch.device) -> None:
        self._model = model
        self._device = device
        forward = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self._last_logits_only = "logits_to_keep" in forward
        self._kv = BatchKVCache()
        self._running: list[_Running] = []

    @property
    def rows(self) -> int:
        """Sequences in the batch."""
        return self._kv.rows

    @property
    def jobs(self) -> list[GenerationJob]:
        """Requests in the batch, in row order."""
        return [r.job for r in self._running]

    def prefill(self, job: GenerationJob) -> None:
        """Run ``job``'s prompt, stream its first tokens, and add its unfinished sequences.

        Raises:
            BlazeError: sampling failed for this request (the batch is unchanged).
            Exception: the model failed (the batch is unchanged).
        """
        prompt = torch.tensor([job.prompt_ids], device=self._device)
        cache = new_cache()
        kwargs: dict[str, Any] = {self._cache_kwarg: cache, "use_cache": True}
        if self._last_logits_only:
            kwargs["logits_to_keep"] = 1
        logits = self._model(input_ids=prompt, **kwargs).logits[:, -1, :].float()
        n = len(job.trackers)
        sampler = RequestSampler(
            job.params, rows=n, vocab_size=logits.shape[-1], device=self._device
        )
        tokens = sampler.next_tokens(logits.expand(n, -1)).tolist()
        running = _Running(job, sampler, list(range(n)), tokens, len(job.prompt_ids))
        for index, token in enumerate(tokens):
            job.add_token(index, token)
        if job.done:
            job.finish()
            return
        if n > 1:
            for layer in cache.layers:
                assert isinstance(layer, GrowableLayer) and layer.keys is not None
                assert layer.values is not None
                layer.set_states(
                    layer.keys.repeat_interleave(n, dim=0),
                    layer.values.repeat_interleave(n, dim=0),
                )
        self._kv.join(cache, [len(job.prompt_ids)] * n)
        self._running.append(running)
        self._compact()

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
            **{self._cache_kwarg: self._kv.cache},
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

    def fail_all(self, error: BlazeError) -> None:
        """End every request with ``error`` and empty the batch."""
        for r in self._running:
            r.job.fail(error)
        self._running = []
        self._kv = BatchKVCache()

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
                r.job.finish()
