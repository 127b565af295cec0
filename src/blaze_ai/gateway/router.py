"""Run one request over a model's deployments: choose, call under the deadline, retry, fall back.

For each model in ``[model, *fallbacks]``: up to ``1 + num_retries`` attempts, each on a
deployment chosen by the balancer among the routable ones not tried yet (then, when every one
was tried, among all routable ones). A client error ends the request at once; a retryable
failure is counted against the deployment (its breaker and stats) and retried after a jittered
back-off; an upstream ``Retry-After`` keeps that deployment out until it passes. A stream is
retried only until it has produced its first item: after that an error reaches the client.
When no deployment of any model can serve, the client gets 503 with ``Retry-After`` set to the
time until the first breaker half-opens.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

from blaze_ai.errors import (
    BlazeError,
    CapacityError,
    ClientError,
    EngineGenerationError,
    NoHealthyDeploymentError,
)
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.model_group import ModelGroup
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import StreamItem

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


class _Attempt:
    """Bookkeeping of one attempt on one deployment: in-flight count, breaker, stats."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._started = time.perf_counter()
        self._done = False
        deployment.stats.in_flight += 1

    def succeed(self) -> None:
        if self._done:
            return
        self._done = True
        d = self.deployment
        d.breaker.record_success()
        d.stats.requests += 1
        d.stats.observe_latency(time.perf_counter() - self._started)

    def fail(self, exc: BaseException) -> BlazeError:
        """Record ``exc``; return it as a BlazeError (an unexpected exception is wrapped)."""
        error = exc if isinstance(exc, BlazeError) else _wrap(exc)
        if self._done:
            return error
        self._done = True
        d = self.deployment
        d.stats.requests += 1
        if isinstance(error, ClientError | CapacityError) or not isinstance(exc, Exception):
            d.breaker.record_ignored()  # the request's fault, a full queue, or a cancel
            return error
        d.breaker.record_failure()
        d.stats.failures += 1
        d.stats.last_error = f"{type(error).__name__}: {error.message}"
        if error.retry_after_s:
            d.not_before = d.clock.now() + error.retry_after_s
        logger.warning(
            "attempt_failed",
            extra={
                "deployment": d.name,
                "error_type": type(error).__name__,
                "error": error.message,
            },
        )
        return error

    def close(self) -> None:
        self.deployment.stats.in_flight -= 1
        if not self._done:  # ended without a verdict (generator closed early)
            self._done = True
            self.deployment.breaker.record_ignored()


def _wrap(exc: BaseException) -> BlazeError:
    """An engine bug becomes a generic 500; its details go to the log, never to the client."""
    logger.error("engine_raised_unexpectedly", exc_info=exc)
    error = EngineGenerationError("internal engine error")
    error.__cause__ = exc
    return error


class Router:
    """Executes requests over model groups with retries and fallbacks.

    Args:
        resolve: model name -> group (for fallbacks).
        sleep: awaitable sleep (injected by tests).
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

    async def call(
        self,
        group: ModelGroup,
        key: str | None,
        deadline: Deadline,
        call: Callable[[Deployment, Deadline], Awaitable[T]],
    ) -> T:
        """``call(deployment, attempt_deadline)`` on a chosen deployment, with retries/fallbacks.

        Raises:
            ClientError: the request is at fault (never retried).
            NoHealthyDeploymentError: nothing could serve (503 with Retry-After).
            BlazeError: the last attempt's error when every attempt failed.
        """
        last: BlazeError | None = None
        for model, attempt_no, deployment in self._plan(group, key):
            attempt = _Attempt(deployment)
            try:
                result = await call(deployment, _attempt_deadline(deployment, deadline))
            except BaseException as exc:
                last = attempt.fail(exc)
                attempt.close()
                await self._recover(exc, last, model, attempt_no, deadline)
                continue
            attempt.succeed()
            attempt.close()
            return result
        raise last if last is not None else self._unavailable(group)

    async def stream(
        self,
        group: ModelGroup,
        key: str | None,
        deadline: Deadline,
        open_stream: Callable[[Deployment, Deadline], AsyncIterator[StreamItem]],
    ) -> AsyncIterator[StreamItem]:
        """Stream from a chosen deployment; retried only until the first item arrives."""
        last: BlazeError | None = None
        for model, attempt_no, deployment in self._plan(group, key):
            attempt = _Attempt(deployment)
            items = open_stream(deployment, _attempt_deadline(deployment, deadline))
            try:
                first = await anext(items)
            except StopAsyncIteration:
                attempt.succeed()
                attempt.close()
                return
            except BaseException as exc:
                last = attempt.fail(exc)
                attempt.close()
                await _aclose(items)
                await self._recover(exc, last, model, attempt_no, deadline)
                continue
            async for item in self._committed(attempt, first, items):
                yield item
            return
        raise last if last is not None else self._unavailable(group)

    @staticmethod
    async def _committed(
        attempt: _Attempt, first: StreamItem, items: AsyncIterator[StreamItem]
    ) -> AsyncIterator[StreamItem]:
        """The rest of a stream that has started: errors now go to the client, not to a retry."""
        try:
            yield first
            async for item in items:
                yield item
        except BaseException as exc:
            error = attempt.fail(exc)
            if error is exc or not isinstance(exc, Exception):
                raise
            raise error from exc
        else:
            attempt.succeed()
        finally:
            attempt.close()
            await _aclose(items)

    def _plan(
        self, group: ModelGroup, key: str | None
    ) -> Iterator[tuple[ModelGroup, int, Deployment]]:
        """The attempts of one request: (model, attempt number, deployment), breaker acquired.

        The caller resumes the iterator only after a failed attempt.
        """
        for model in self._chain(group):
            tried: list[str] = []
            for attempt_no in range(model.retry.num_retries + 1):
                deployment = self._pick(model, key, tried)
                if deployment is None or not deployment.breaker.acquire():
                    break
                yield model, attempt_no, deployment
                tried.append(deployment.name)

    async def _recover(
        self,
        exc: BaseException,
        error: BlazeError,
        group: ModelGroup,
        attempt_no: int,
        deadline: Deadline,
    ) -> None:
        """Re-raise a final failure; wait the back-off before retrying a retryable one."""
        if not _should_retry(exc, error, deadline):
            _reraise(exc, error)
        if isinstance(error, CapacityError):
            return  # a full queue elsewhere is no reason to wait before trying another
        delay = group.retry.backoff.delay_s(attempt_no, self._rng)
        await self._sleep(min(delay, deadline.remaining_s()))

    def _chain(self, group: ModelGroup) -> list[ModelGroup]:
        return [group, *(self._resolve(name) for name in group.fallbacks)]

    def _pick(self, group: ModelGroup, key: str | None, tried: list[str]) -> Deployment | None:
        candidates = group.candidates(exclude=tried) or group.candidates()
        if not candidates:
            return None
        return group.balancer.choose(candidates, key)

    def _unavailable(self, group: ModelGroup) -> NoHealthyDeploymentError:
        chain = self._chain(group)
        wait = min(g.seconds_until_available() for g in chain)
        names = ", ".join(g.name for g in chain)
        return NoHealthyDeploymentError(
            f"no deployment of {names} can serve now", retry_after_s=wait
        )


def _reraise(exc: BaseException, error: BlazeError) -> NoReturn:
    """Raise ``error``; when it wraps ``exc``, keep ``exc`` as its cause."""
    if error is exc:
        raise exc
    raise error from exc


async def _aclose(items: AsyncIterator[StreamItem]) -> None:
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()


def _attempt_deadline(deployment: Deployment, deadline: Deadline) -> Deadline:
    if deployment.timeout_s is None:
        return deadline
    own = deadline.clock.now() + deployment.timeout_s
    return Deadline(min(own, deadline.expires_at), deadline.clock)


def _should_retry(exc: BaseException, error: BlazeError, deadline: Deadline) -> bool:
    if not isinstance(exc, Exception) or isinstance(error, ClientError):
        return False
    if deadline.expired():
        return False
    return error.retryable or isinstance(error, CapacityError)
