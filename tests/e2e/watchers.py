"""Background clients that watch a server while a test attacks it: a ``/health`` sampler and
one long streamed chat completion, each in its own thread (its own connection), so the test's
event loop being busy does not inflate their timings."""

from __future__ import annotations

import threading
import time

import httpx
import openai


class HealthSampler(threading.Thread):
    """``GET /health`` every ``every_s`` seconds over one kept-alive connection, until
    ``stop()``; ``samples`` holds (latency in seconds, status; 0 for a transport error).

    ``keepalive_expiry_s`` should stay under the server's idle timeout, so the client drops the
    connection before the server does, and the sampler never opens one while a test fills the
    server's connection cap.
    """

    def __init__(self, base_url: str, every_s: float, keepalive_expiry_s: float) -> None:
        super().__init__(name="health-sampler", daemon=True)
        self.base_url, self.every_s = base_url, every_s
        self.limits = httpx.Limits(max_connections=1, keepalive_expiry=keepalive_expiry_s)
        self.samples: list[tuple[float, int]] = []
        self._stopped = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5, limits=self.limits) as client:
            while not self._stopped.wait(self.every_s):
                started = time.perf_counter()
                try:
                    status = client.get("/health").status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((time.perf_counter() - started, status))

    def stop(self) -> None:
        self._stopped.set()
        self.join(10)


class LongStream(threading.Thread):
    """One streamed chat completion through the official ``openai`` client, read to its end
    (or until ``stop()``): the content chunks, the longest gap between two, the finish reason,
    the duration and any error."""

    def __init__(self, base_url: str, model: str) -> None:
        super().__init__(name="long-stream", daemon=True)
        self.client = openai.OpenAI(
            base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60
        )
        self.model = model
        self.chunks = 0
        self.max_gap_s = 0.0
        self.finish_reason: str | None = None
        self.duration_s = 0.0
        self.error: BaseException | None = None
        self._stopped = threading.Event()

    def run(self) -> None:
        started = last = time.perf_counter()
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "go on"}], stream=True
            )
            with stream:
                for chunk in stream:
                    now = time.perf_counter()
                    choice = chunk.choices[0] if chunk.choices else None
                    if choice is not None and choice.delta.content:
                        self.chunks += 1
                        self.max_gap_s, last = max(self.max_gap_s, now - last), now
                    if choice is not None and choice.finish_reason:
                        self.finish_reason = choice.finish_reason
                    if self._stopped.is_set():
                        break
        except Exception as exc:  # reported by the test that checks the stream
            self.error = exc
        finally:
            self.duration_s = time.perf_counter() - started
            self.client.close()

    def stop(self) -> None:
        self._stopped.set()
        self.join(10)
