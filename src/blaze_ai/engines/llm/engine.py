"""The local LLM engine on Hugging Face ``transformers``.

Requests are decoded together by continuous (iteration-level) batching on the engine's batching
thread (:mod:`blaze_ai.engines.llm.scheduler`; model calls are blocking and never run on the event
loop); each request's text streams back as it is produced through a
:class:`~.request.GenerationJob`. ``n`` choices of one request are ``n`` sequences
of the batch that share one prefill of the prompt, at most ``max_sequences_per_request`` of them
at once; ``n × max_tokens`` and the prompt's length are capped per request.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jinja2
import torch

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.engines.base import EngineLoad, EngineState
from blaze_ai.engines.lifecycle import EngineLifecycle
from blaze_ai.engines.llm.batch import DecodeBatch
from blaze_ai.engines.llm.loader import LoadedModel, load_causal_lm
from blaze_ai.engines.llm.prefix_cache import PrefixCache
from blaze_ai.engines.llm.request import GenerationJob, is_end
from blaze_ai.engines.llm.scheduler import BatchScheduler, BatchStats
from blaze_ai.errors import (
    ContextLengthExceededError,
    EngineGenerationError,
    EngineTimeoutError,
    InvalidRequestError,
)
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.streams import StreamCollector
from blaze_ai.types import (
    ChatRequest,
    CompletionRequest,
    SamplingParams,
    StreamItem,
    TextRequest,
    TextResult,
    decode_extra,
)

logger = logging.getLogger(__name__)

CPU_PREFILL_TOKENS = 128
"""Default ``max_prefill_tokens`` on CPU: one forward pass over them takes 0.15-0.4 s of a core."""
CUDA_PREFILL_TOKENS = 4096
"""Default ``max_prefill_tokens`` on CUDA, where a prefill is bound by compute well past this."""

Loader = Callable[[LLMDeploymentConfig, Path], LoadedModel]

TEMPLATE_ERRORS = (jinja2.TemplateError, ValueError, TypeError)
"""What ``apply_chat_template`` raises for messages its template does not take: the template's
own ``raise_exception`` and undefined values (``jinja2.TemplateError``), and transformers' checks
of the conversation (``ValueError``, ``TypeError``). Anything else is an engine bug (500)."""


NO_BATCH = BatchStats(0, 0, 0, 0, 0, 0, 0, 0)
"""The figures of an engine with no scheduler (before its first start, or stopped)."""
_TOTALS = (
    "steps_total",
    "cancelled_total",
    "rejected_total",
    "cached_prompt_tokens_total",
    "prefill_tokens_total",
)


def with_earlier(stats: BatchStats, earlier: BatchStats) -> BatchStats:
    """``stats`` of the running scheduler, its counters added to those of ``earlier`` ones
    (the schedulers of the engine's previous starts); the peak batch is the larger one."""
    totals = {name: getattr(stats, name) + getattr(earlier, name) for name in _TOTALS}
    peak = max(stats.peak_batch_size, earlier.peak_batch_size)
    return dataclasses.replace(stats, peak_batch_size=peak, **totals)


class TransformersLLMEngine:
    """An :class:`~blaze_ai.engines.base.LLMEngine` running a causal LM in this process.

    Args:
        name: deployment name, used in logs and metrics.
        config: the deployment's settings (model source, device, dtype, context window).
        cache_dir: where converted model copies are kept.
        torch_threads: torch intra-op threads; None keeps torch's default.
        loader: loads the model (injected by tests); blocking, run in a thread.
    """

    def __init__(
        self,
        name: str,
        config: LLMDeploymentConfig,
        *,
        cache_dir: Path,
        torch_threads: int | None = None,
        loader: Loader = load_causal_lm,
    ) -> None:
        self.name = name
        self.context_window = 0
        self._lifecycle = EngineLifecycle(name)
        self._config = config
        self._cache_dir = cache_dir
        self._torch_threads = torch_threads
        self._loader = loader
        self._loaded: LoadedModel | None = None
        self._scheduler: BatchScheduler | None = None
        self._retired = NO_BATCH  # the counters of the schedulers of earlier starts

    @property
    def state(self) -> EngineState:
        """The engine's current state."""
        return self._lifecycle.state

    @property
    def last_error(self) -> str | None:
        """The latest start failure as ``Type: message``; None if it never failed."""
        return self._lifecycle.last_error

    async def start(self) -> None:
        """Load the model in a thread. Raises EngineDeadError (state FAILED) if it cannot load."""
        self._lifecycle.starting()
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        self._loaded = await self._lifecycle.load(
            lambda: self._loader(self._config, self._cache_dir)
        )
        self.context_window = self._loaded.context_window
        batch = DecodeBatch(
            self._loaded.model,
            device=self._loaded.device,
            prefix_cache=PrefixCache(self._config.prefix_cache_max_bytes),
        )
        self._scheduler = BatchScheduler(
            batch,
            name=self.name,
            max_batch_size=self._config.max_batch_size,
            max_sequences_per_request=self._config.max_sequences_per_request,
            max_queue=self._config.max_queue,
            max_prefill_tokens=self._config.max_prefill_tokens
            or (CUDA_PREFILL_TOKENS if self._loaded.device.type == "cuda" else CPU_PREFILL_TOKENS),
        )
        self._scheduler.start()
        self._lifecycle.ready()

    async def stop(self) -> None:
        """Stop the batching thread; queued and running requests fail with 503."""
        self._lifecycle.stopped()
        if self._scheduler is not None:
            scheduler, self._scheduler = self._scheduler, None
            earlier = self._retired
            self._retired = with_earlier(scheduler.stats(), earlier)  # no dip while it stops
            await asyncio.to_thread(scheduler.stop)
            self._retired = with_earlier(scheduler.stats(), earlier)

    async def check_health(self) -> None:
        """Raise EngineUnavailableError unless the engine is READY or DEGRADED."""
        self._lifecycle.check_health()

    def load(self) -> EngineLoad:
        """Requests accepted and not finished, those queued, and the batch's size."""
        stats = self.batch_stats()
        return EngineLoad(
            in_flight=stats.running + stats.queue_depth,
            queue_depth=stats.queue_depth,
            batch_size=stats.batch_size,
            peak_batch_size=stats.peak_batch_size,
            cancelled_total=stats.cancelled_total,
            cached_prompt_tokens_total=stats.cached_prompt_tokens_total,
            prefill_tokens_total=stats.prefill_tokens_total,
            prefix_cache_bytes=stats.prefix_cache_bytes,
            rejected_total=stats.rejected_total,
        )

    def batch_stats(self) -> BatchStats:
        """Queue depth, batch size and the batching counters (all zero before the first
        start). The counters are totals since the engine was made: a restart by the supervisor
        (a new scheduler) does not reset them, so the metrics read from them never go down."""
        current = self._scheduler.stats() if self._scheduler is not None else NO_BATCH
        return with_earlier(current, self._retired)

    async def generate(self, req: TextRequest, deadline: Deadline) -> TextResult:
        """Generate every choice of ``req``; see :class:`~blaze_ai.engines.base.LLMEngine`.

        Raises:
            EngineGenerationError: the stream ended before every choice finished (or without
                its usage).
        """
        collector = StreamCollector(req.params.n)
        async for item in self.stream(req, deadline):
            collector.add(item)
        result = collector.result()
        if result is None:
            raise EngineGenerationError("the stream ended before every choice finished")
        return result

    async def stream(self, req: TextRequest, deadline: Deadline) -> AsyncIterator[StreamItem]:
        """Yield text chunks as they are generated, then the usage; closing it cancels the job.

        Raises:
            BackPressureError: the engine's queue is full (429 with ``Retry-After``).
        """
        loaded, scheduler = self._require_ready()
        _check_sampling(req.params)
        prompt_ids = await asyncio.to_thread(self._encode, loaded, req)
        max_tokens = self._completion_budget(len(prompt_ids), req)
        job = GenerationJob(
            asyncio.get_running_loop(),
            prompt_ids=prompt_ids,
            decode=lambda ids: str(loaded.tokenizer.decode(list(ids), skip_special_tokens=True)),
            params=req.params,
            eos_token_ids=loaded.eos_token_ids,
            max_tokens=max_tokens,
            deadline=deadline,
            owner=req.request_id or None,
        )
        scheduler.submit(job)
        try:
            while True:
                try:
                    async with asyncio.timeout(deadline.remaining_s()):
                        item = await job.events.get()
                except TimeoutError:
                    raise EngineTimeoutError(f"request timed out on engine {self.name}") from None
                if is_end(item):
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancel()

    def _require_ready(self) -> tuple[LoadedModel, BatchScheduler]:
        self._lifecycle.require_ready()
        assert self._loaded is not None and self._scheduler is not None
        return self._loaded, self._scheduler

    def _encode(self, loaded: LoadedModel, req: TextRequest) -> list[int]:
        _check_supported(req)
        tokenizer = loaded.tokenizer
        if isinstance(req, ChatRequest):
            if not tokenizer.chat_template:
                raise InvalidRequestError(
                    f"model {req.model} has no chat template; use /v1/completions", param="model"
                )
            messages = [_message_dict(m.role, m.content, m.name) for m in req.messages]
            try:
                encoded: Any = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )
            except TEMPLATE_ERRORS as exc:  # the template refuses these messages
                raise InvalidRequestError(f"chat template error: {exc}", param="messages") from exc
            ids = list(encoded["input_ids"])
        else:
            ids = list(tokenizer(req.prompt)["input_ids"])
        if not ids:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        return [int(i) for i in ids]

    def _completion_budget(self, prompt_tokens: int, req: TextRequest) -> int:
        """Tokens each choice of ``req`` may generate, within the context window and the caps.

        Raises:
            ContextLengthExceededError: the prompt and ``max_tokens`` do not fit the window.
            InvalidRequestError: the prompt is over ``max_prompt_tokens``, or ``n × max_tokens``
                over ``max_completion_tokens_per_request`` (times the prompts of a list: they
                are one request).
        """
        window = self.context_window
        requested = req.params.max_tokens
        prompt_param = "messages" if isinstance(req, ChatRequest) else "prompt"
        if prompt_tokens >= window or (
            requested is not None and prompt_tokens + requested > window
        ):
            asked = prompt_tokens + (requested or 0)
            raise ContextLengthExceededError(
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{asked} tokens ({prompt_tokens} in the prompt, {requested or 0} for the "
                "completion). Please reduce the prompt or the completion length.",
                param="max_tokens" if prompt_tokens < window else prompt_param,
            )
        max_prompt = self._config.max_prompt_tokens
        if max_prompt is not None and prompt_tokens > max_prompt:
            raise InvalidRequestError(
                f"the prompt has {prompt_tokens} tokens; this model takes at most {max_prompt}",
                param=prompt_param,
            )
        prompts = req.prompt_count if isinstance(req, CompletionRequest) else 1
        return self._capped(requested, req.params.n, window - prompt_tokens, prompts)

    def _capped(self, requested: int | None, n: int, room: int, prompts: int = 1) -> int:
        """``requested`` (or ``room``, the window left) within ``prompts × n × max_tokens`` <=
        the cap (``prompts``: of the list this request's prompt came in)."""
        cap = self._config.max_completion_tokens_per_request
        sequences = prompts * n
        if requested is None:
            if cap < sequences:
                raise InvalidRequestError(
                    f"n is {n}; this model generates at most {cap} tokens per request", param="n"
                )
            return min(room, cap // sequences)
        if sequences * requested > cap:
            asked = f"{n} × {requested}"
            if prompts > 1:
                asked = f"{prompts} prompts × {asked}"
            raise InvalidRequestError(
                f"n × max_tokens is {asked} = {sequences * requested} tokens; this model "
                f"generates at most {cap} tokens per request: lower n or max_tokens",
                param="max_tokens",
            )
        return requested


def _check_sampling(params: SamplingParams) -> None:
    """Refuse sampling values the API layer would refuse too (engines can be called directly)."""
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(params, name)
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidRequestError(f"{name} must be a finite number", param=name)
    if params.temperature < 0 or not 0 < params.top_p <= 1 or params.n < 1:
        raise InvalidRequestError("temperature >= 0, 0 < top_p <= 1 and n >= 1 are required")


UNSUPPORTED_OPTIONS = (
    "logprobs",
    "top_logprobs",
    "suffix",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "response_format",
    "logit_bias",
    "prediction",
    "modalities",
    "audio",
)
"""OpenAI options this engine cannot honour: refused when set to anything but their default
(``extra_params`` leaves defaults out: ``tools: []``, ``response_format: {"type": "text"}``).
Fields OpenAI does not define are still ignored."""


def _check_supported(req: TextRequest) -> None:
    """Refuse, with a 400 naming it, an OpenAI option this engine cannot honour."""
    extra = decode_extra(req.extra_params)
    for name in UNSUPPORTED_OPTIONS:
        if extra.get(name):
            raise InvalidRequestError(f"{name} is not supported by this engine", param=name)
    best_of = extra.get("best_of")
    if best_of is not None and best_of != req.params.n:
        raise InvalidRequestError("best_of other than n is not supported", param="best_of")


def _message_dict(role: str, content: str, name: str | None) -> dict[str, str]:
    message = {"role": role, "content": content}
    if name is not None:
        message["name"] = name
    return message
