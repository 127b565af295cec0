"""Run one request over a model's deployments: choose, call under the deadline, retry, fall back.

For each model in ``[model, *fallbacks]``: up to ``1 + num_retries`` attempts, each on a
deployment chosen by the balancer among the routable ones not tried yet (then, when every one
was tried, among all routable ones). A client error ends the request at once; a retryable
failure is counted against the deployment (its breaker and counters) and retried after a
jittered back-off; an upstream ``Retry-After`` keeps that deployment out until it passes.

A stream is retried until it has produced its first item with content (text, a finish reason or
the usage): empty chunks before it (an upstream's role-only chunk) are held back, so a failure
there still falls back with nothing sent. After that an error reaches the client.

When nothing can serve: 429 ``rate_limit_error`` when the deployments are waiting out upstream
rate limits (``Retry-After``: the longest remaining wait), else 503 with ``Retry-After`` set to
the time until the first breaker half-opens.

Cancellation (the client went away) is an explicit branch, as in vLLM's ``AsyncLLM.generate``:
the attempt is counted as a client disconnect (neither way on the breaker) and the cancel
propagates; it is never retried. A stream closed by its consumer (``GeneratorExit``) counts the
same way.

With auth on, a fallback the request's API key may not use is skipped (``meter.principal``).
Retries and fallbacks are counted on the model (``ModelGroup.counters``); each attempt's time
counts as engine time on the request's record (``ctx.record``), and is a span of its trace.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar, cast

from blaze_ai.engines.base import AnyEngine, DiffusionEngine, LLMEngine
from blaze_ai.errors import (
    BlazeError,
    CapacityError,
    ClientError,
    NoHealthyDeploymentError,
    UpstreamRateLimitError,
)
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.model_group import ModelGroup, RoutingContext
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.resilience.retry import Backoff
from blaze_ai.streams import aclose
from blaze_ai.tenancy.meter import Meter
from blaze_ai.types import ImageRequest, ImageResult, StreamItem, TextRequest, TextResult, Usage

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Operation = Callable[[AnyEngine, Deadline], Awaitable[T]]


class Router:
    """Executes requests over model groups with retries and fallbacks.

    Args:
        resolve: model name -> group (for fallbacks).
        sleep: awaitable sleep of the back-off (injected by tests).
        rng: randomness of the back-off jitter.
    """

    def __init__(
        self,
        resolve: Callable[[str], ModelGroup],
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._resolve = resolve
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def generate(
        self,
        group: ModelGroup,
        key: str | None,
        deadline: Deadline,
        req: TextRequest,
        ctx: RoutingContext,
    ) -> TextResult:
        """The whole answer to ``req`` from a deployment of ``group`` (or of a fallback); the
        deployment that answered is written on ``ctx.meter``.

        Raises:
            ClientError: the request is at fault (never retried).
            UpstreamRateLimitError: every candidate is rate limited upstream (429).
            NoHealthyDeploymentError: nothing could serve (503 with Retry-After).
            BlazeError: the last attempt's error when every attempt failed.
        """

        async def op(engine: AnyEngine, attempt_deadline: Deadline) -> TextResult:
            return await cast(LLMEngine, engine).generate(req, attempt_deadline)

        return await self._call(group, key, deadline, op, ctx)

    async def generate_images(
        self,
        group: ModelGroup,
        key: str | None,
        deadline: Deadline,
        req: ImageRequest,
        ctx: RoutingContext,
    ) -> ImageResult:
        """The images of ``req``; raises as :meth:`generate`."""

        async def op(engine: AnyEngine, attempt_deadline: Deadline) -> ImageResult:
            return await cast(DiffusionEngine, engine).generate_images(req, attempt_deadline)

        return await self._call(group, key, deadline, op, ctx)

    async def stream(
        self,
        group: ModelGroup,
        key: str | None,
        deadline: Deadline,
        req: TextRequest,
        ctx: RoutingContext,
    ) -> AsyncGenerator[StreamItem, None]:
        """Stream the answer to ``req``; retried only until the first item with content.

        Raises as :meth:`generate`, from the first ``__anext__`` while nothing was yielded.
        """
        last: BlazeError | None = None
        meter = ctx.meter
        for model, attempt_no, deployment in self._plan(group, key, meter):
            with deployment.attempt(ctx.record, attempt_no) as attempt:
                engine = cast(LLMEngine, deployment.engine)
                items = engine.stream(req, _attempt_deadline(deployment, deadline))
                try:
                    with attempt.outgoing():  # the upstream request goes out in this step
                        head = await _until_content(items)
                except asyncio.CancelledError:
                    attempt.cancel()
                    await aclose(items)
                    raise  # the client went away: no retry
                except Exception as exc:
                    last = attempt.fail(exc)
                    await aclose(items)
                else:
                    if meter is not None:
                        meter.deployment = deployment.name
                    try:
                        for item in head:
                            yield item
                        async for item in items:
                            yield item
                    except (asyncio.CancelledError, GeneratorExit):
                        attempt.cancel()  # the client went away mid-stream
                        raise
                    except Exception as exc:  # committed: the client gets the error
                        error = attempt.fail(exc)
                        if error is exc:
                            raise
                        raise error from exc
                    else:
                        attempt.succeed()
                    finally:
                        await aclose(items)
                    return
            await self._recover(last, model, attempt_no, deadline)
        raise self._exhausted(group, last)

    async def _call(
        self,
        group: ModelGroup,
        key: str | None,
        deadline: Deadline,
        op: Operation[T],
        ctx: RoutingContext,
    ) -> T:
        last: BlazeError | None = None
        meter = ctx.meter
        for model, attempt_no, deployment in self._plan(group, key, meter):
            with deployment.attempt(ctx.record, attempt_no) as attempt:
                try:
                    with attempt.outgoing():
                        result = await op(
                            deployment.engine, _attempt_deadline(deployment, deadline)
                        )
                except asyncio.CancelledError:
                    attempt.cancel()
                    raise  # the client went away: no retry
                except Exception as exc:
                    last = attempt.fail(exc)
                else:
                    attempt.succeed()
                    if meter is not None:
                        meter.deployment = deployment.name
                    return result
            await self._recover(last, model, attempt_no, deadline)
        raise self._exhausted(group, last)

    def _plan(
        self, group: ModelGroup, key: str | None, meter: Meter | None
    ) -> Iterator[tuple[ModelGroup, int, Deployment]]:
        """The attempts of one request: (model, attempt number, deployment), breaker acquired.

        The caller resumes the iterator only after a failed attempt.
        """
        for model in self._chain(group, meter):
            tried: list[str] = []
            for attempt_no in range(model.retry.num_retries + 1):
                deployment = self._pick(model, key, tried)
                if deployment is None or not deployment.acquire():
                    break
                if attempt_no:
                    model.counters.retries += 1
                elif model is not group:
                    group.counters.fallbacks += 1  # the requested model fell back
                yield model, attempt_no, deployment
                tried.append(deployment.name)

    async def _recover(
        self, error: BlazeError | None, group: ModelGroup, attempt_no: int, deadline: Deadline
    ) -> None:
        """Raise a final failure; wait the back-off before retrying a retryable one."""
        assert error is not None
        if isinstance(error, ClientError) or deadline.expired():
            raise error
        if isinstance(error, CapacityError):
            return  # a full queue elsewhere is no reason to wait before trying another
        if not error.retryable:
            raise error
        delay = Backoff.from_config(group.retry).delay_s(attempt_no, self._rng)
        await self._sleep(min(delay, deadline.remaining_s()))

    def _chain(self, group: ModelGroup, meter: Meter | None = None) -> list[ModelGroup]:
        """``group`` and its fallbacks, but the fallbacks the request's key may not use."""
        fallbacks = (self._resolve(name) for name in group.fallbacks)
        if meter is None:
            return [group, *fallbacks]
        allowed = meter.principal.may_use
        return [group, *(f for f in fallbacks if allowed(f.name, *f.aliases))]

    def _pick(self, group: ModelGroup, key: str | None, tried: list[str]) -> Deployment | None:
        candidates = group.candidates(exclude=tried) or group.candidates()
        if not candidates:
            return None
        return group.balancer.choose(candidates, key)

    def _exhausted(self, group: ModelGroup, last: BlazeError | None) -> BlazeError:
        """The error once no attempt is left: the last attempt's, else why nothing could serve.

        Upstream rate limits stay 429s: when the last attempt was rate limited, or when every
        deployment is waiting out an upstream's ``Retry-After``, the client gets
        :class:`UpstreamRateLimitError` with the longest remaining wait.
        """
        chain = self._chain(group)
        deployments = [d for g in chain for d in g.deployments]
        waits = [d.seconds_until_available() for d in deployments if d.rate_limited]
        if isinstance(last, UpstreamRateLimitError):
            return UpstreamRateLimitError(
                last.message, retry_after_s=max(waits, default=last.retry_after_s or 1.0)
            )
        if last is None and waits and len(waits) == len(deployments):
            return UpstreamRateLimitError(
                "every upstream is rate limited", retry_after_s=max(waits)
            )
        return last if last is not None else self._unavailable(chain)

    @staticmethod
    def _unavailable(chain: list[ModelGroup]) -> NoHealthyDeploymentError:
        wait = min(g.seconds_until_available() for g in chain)
        names = ", ".join(g.name for g in chain)
        return NoHealthyDeploymentError(
            f"no deployment of {names} can serve now", retry_after_s=wait
        )


async def _until_content(items: AsyncIterator[StreamItem]) -> list[StreamItem]:
    """Pull items up to and including the first with content (all of them if none has any)."""
    head: list[StreamItem] = []
    async for item in items:
        head.append(item)
        if isinstance(item, Usage) or item.text or item.finish_reason is not None:
            break
    return head


def _attempt_deadline(deployment: Deployment, deadline: Deadline) -> Deadline:
    if deployment.timeout_s is None:
        return deadline
    own = deadline.clock.now() + deployment.timeout_s
    return Deadline(min(own, deadline.expires_at), deadline.clock)
