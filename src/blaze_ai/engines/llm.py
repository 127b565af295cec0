"""The local LLM engine on Hugging Face ``transformers``.

Requests run one at a time on a dedicated worker thread (``generate`` is blocking and must never
run on the event loop); each request's text streams back as it is produced through a
:class:`~blaze_ai.engines.llm_job.GenerationJob`. ``n`` choices of one request are generated
together as one batch (the prompt repeated ``n`` times, which also works for greedy decoding).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.engines.base import EngineLoad, EngineState
from blaze_ai.engines.llm_job import GenerationJob, is_end
from blaze_ai.engines.llm_loader import LoadedModel, load_causal_lm
from blaze_ai.engines.penalties import PresenceFrequencyPenalty
from blaze_ai.errors import (
    BlazeError,
    ContextLengthExceededError,
    EngineDeadError,
    EngineGenerationError,
    EngineTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
)
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import (
    ChatRequest,
    Choice,
    FinishReason,
    SamplingParams,
    StreamItem,
    TextRequest,
    TextResult,
    Usage,
    decode_extra,
)

logger = logging.getLogger(__name__)

Loader = Callable[[LLMDeploymentConfig, Path], LoadedModel]


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
        self.last_error: str | None = None
        self._config = config
        self._cache_dir = cache_dir
        self._torch_threads = torch_threads
        self._loader = loader
        self._state = EngineState.STARTING
        self._loaded: LoadedModel | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: set[GenerationJob] = set()

    @property
    def state(self) -> EngineState:
        """The engine's current state."""
        return self._state

    async def start(self) -> None:
        """Load the model in a thread. Raises EngineDeadError (state FAILED) if it cannot load."""
        self._state = EngineState.STARTING
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)
        try:
            self._loaded = await asyncio.to_thread(self._loader, self._config, self._cache_dir)
        except Exception as exc:
            self._state = EngineState.FAILED
            self.last_error = f"{type(exc).__name__}: {exc}"
            message = exc.message if isinstance(exc, BlazeError) else str(exc)
            raise EngineDeadError(f"engine {self.name} failed to load: {message}") from exc
        self.context_window = self._loaded.context_window
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"blaze-{self.name}")
        self._state = EngineState.READY

    async def stop(self) -> None:
        """Cancel every job and wait for the running step to end; state becomes STOPPED."""
        self._state = EngineState.STOPPED
        for job in list(self._jobs):
            job.cancel()
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    async def check_health(self) -> None:
        """Raise EngineUnavailableError unless the engine is READY or DEGRADED."""
        if self._state not in (EngineState.READY, EngineState.DEGRADED):
            raise EngineUnavailableError(f"engine {self.name} is {self._state.value}")

    def load(self) -> EngineLoad:
        """Requests accepted and not finished, and how many of them wait for the worker."""
        queued = sum(1 for job in self._jobs if not job.started)
        return EngineLoad(in_flight=len(self._jobs), queue_depth=queued)

    async def generate(self, req: TextRequest, deadline: Deadline) -> TextResult:
        """Generate every choice of ``req``; see :class:`~blaze_ai.engines.base.LLMEngine`."""
        texts: dict[int, list[str]] = {}
        reasons: dict[int, FinishReason] = {}
        usage = Usage(0, 0)
        async for item in self.stream(req, deadline):
            if isinstance(item, Usage):
                usage = item
                continue
            texts.setdefault(item.index, []).append(item.text)
            if item.finish_reason is not None:
                reasons[item.index] = item.finish_reason
        choices = tuple(
            Choice(index=i, text="".join(texts.get(i, [])), finish_reason=reasons[i])
            for i in sorted(reasons)
        )
        return TextResult(choices=choices, usage=usage)

    async def stream(self, req: TextRequest, deadline: Deadline) -> AsyncIterator[StreamItem]:
        """Yield text chunks as they are generated, then the usage; closing it cancels the job."""
        loaded, executor = self._require_ready()
        prompt_ids = await asyncio.to_thread(self._encode, loaded, req)
        max_tokens = self._completion_budget(len(prompt_ids), req.params)
        job = GenerationJob(
            asyncio.get_running_loop(),
            prompt_ids=prompt_ids,
            decode=lambda ids: str(loaded.tokenizer.decode(list(ids), skip_special_tokens=True)),
            n=req.params.n,
            stop=req.params.stop,
            eos_token_ids=loaded.eos_token_ids,
            max_tokens=max_tokens,
        )
        self._jobs.add(job)
        future = asyncio.get_running_loop().run_in_executor(
            executor, self._run, loaded, job, req.params
        )
        future.add_done_callback(lambda _: self._jobs.discard(job))
        try:
            while True:
                try:
                    item = await asyncio.wait_for(job.events.get(), timeout=deadline.remaining_s())
                except TimeoutError:
                    raise EngineTimeoutError(f"request timed out on engine {self.name}") from None
                if is_end(item):
                    self._jobs.discard(job)  # the worker has nothing left to do for it
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancel()

    def _require_ready(self) -> tuple[LoadedModel, ThreadPoolExecutor]:
        if self._state not in (EngineState.READY, EngineState.DEGRADED):
            raise EngineUnavailableError(
                f"engine {self.name} is {self._state.value}", retry_after_s=5.0
            )
        assert self._loaded is not None and self._executor is not None
        return self._loaded, self._executor

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
            except Exception as exc:  # jinja templates raise on inputs they do not support
                raise InvalidRequestError(f"chat template error: {exc}", param="messages") from exc
            ids = list(encoded["input_ids"])
        else:
            ids = list(tokenizer(req.prompt)["input_ids"])
        if not ids:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        return [int(i) for i in ids]

    def _completion_budget(self, prompt_tokens: int, params: SamplingParams) -> int:
        window = self.context_window
        requested = params.max_tokens
        if prompt_tokens >= window or (
            requested is not None and prompt_tokens + requested > window
        ):
            asked = prompt_tokens + (requested or 0)
            raise ContextLengthExceededError(
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{asked} tokens ({prompt_tokens} in the prompt, {requested or 0} for the "
                "completion). Please reduce the prompt or the completion length.",
                param="max_tokens" if prompt_tokens < window else "messages",
            )
        return requested if requested is not None else window - prompt_tokens

    def _run(self, loaded: LoadedModel, job: GenerationJob, params: SamplingParams) -> None:
        """Worker thread: run ``generate`` for one job, streaming through the job."""
        if job.cancelled:
            return
        job.started = True
        try:
            input_ids = torch.tensor([job.prompt_ids] * params.n, device=loaded.device)
            config = _generation_config(loaded, params, job.max_tokens)
            with torch.inference_mode():
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                else:
                    torch.seed()
                loaded.model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    generation_config=config,
                    streamer=job,
                    stopping_criteria=StoppingCriteriaList([job]),
                    logits_processor=_logits_processors(len(job.prompt_ids), params),
                )
        except Exception as exc:
            logger.exception("generation_failed", extra={"engine": self.name})
            job.fail(EngineGenerationError(f"generation failed: {type(exc).__name__}: {exc}"))
            return
        job.finish()


def _generation_config(loaded: LoadedModel, params: SamplingParams, max_tokens: int) -> Any:
    sampling: dict[str, Any] = {"do_sample": False}
    if params.temperature > 0:
        sampling = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p}
    return GenerationConfig(
        max_new_tokens=max_tokens,
        eos_token_id=sorted(loaded.eos_token_ids),
        pad_token_id=loaded.pad_token_id,
        **sampling,
    )


def _check_supported(req: TextRequest) -> None:
    """Refuse, with a 400, the OpenAI options this engine cannot honour."""
    extra = decode_extra(req.extra_params)
    if extra.get("logprobs"):
        raise InvalidRequestError("logprobs are not supported by this engine", param="logprobs")
    if extra.get("suffix"):
        raise InvalidRequestError("suffix is not supported by this engine", param="suffix")
    best_of = extra.get("best_of")
    if best_of is not None and best_of != req.params.n:
        raise InvalidRequestError("best_of other than n is not supported", param="best_of")


def _logits_processors(prompt_tokens: int, params: SamplingParams) -> LogitsProcessorList:
    processors = LogitsProcessorList()
    if params.presence_penalty or params.frequency_penalty:
        processors.append(
            PresenceFrequencyPenalty(
                prompt_tokens, params.presence_penalty, params.frequency_penalty
            )
        )
    return processors


def _message_dict(role: str, content: str, name: str | None) -> dict[str, str]:
    message = {"role": role, "content": content}
    if name is not None:
        message["name"] = name
    return message
