"""The life cycle the engines share: states, the start failure, and the ready checks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from blaze_ai.engines.base import EngineState
from blaze_ai.engines.lifecycle import EngineLifecycle
from blaze_ai.errors import ConfigError, EngineDeadError, EngineUnavailableError


def test_a_new_engine_is_starting_and_refuses_requests() -> None:
    life = EngineLifecycle("m/0")
    assert (life.state, life.last_error) == (EngineState.STARTING, None)
    with pytest.raises(EngineUnavailableError, match="engine m/0 is starting") as info:
        life.require_ready()
    assert info.value.retry_after_s == 5.0
    with pytest.raises(EngineUnavailableError) as health:
        life.check_health()
    assert health.value.retry_after_s is None


async def test_load_returns_what_the_loader_returns_in_a_worker_thread() -> None:
    life = EngineLifecycle("m/0")
    assert await life.load(threading.get_ident) != threading.get_ident()
    assert life.state is EngineState.STARTING  # ready only when the engine says so
    life.ready()
    life.check_health()
    life.require_ready()


@pytest.mark.parametrize(
    ("error", "message"),
    [(OSError("no such folder"), "no such folder"), (ConfigError("bad gguf"), "bad gguf")],
)
async def test_a_failed_load_marks_the_engine_failed(error: Exception, message: str) -> None:
    life = EngineLifecycle("m/0")

    def load() -> None:
        raise error

    with pytest.raises(EngineDeadError) as info:
        await life.load(load)
    assert info.value.message == f"engine m/0 failed to load: {message}"
    assert info.value.__cause__ is error
    assert life.state is EngineState.FAILED
    assert life.last_error == f"{type(error).__name__}: {error}"
    with pytest.raises(EngineUnavailableError, match="is failed"):
        life.check_health()


def test_fail_records_the_message_and_returns_the_error_to_raise() -> None:
    life = EngineLifecycle("r/0")
    error = life.fail("engine r/0: variable KEY is not set")
    assert isinstance(error, EngineDeadError)
    assert (life.state, life.last_error) == (EngineState.FAILED, error.message)


def test_degraded_still_serves_and_stopped_does_not() -> None:
    life = EngineLifecycle("m/0")
    life.degraded()
    life.check_health()
    life.require_ready()
    life.stopped()
    assert life.state is EngineState.STOPPED
    with pytest.raises(EngineUnavailableError, match="is stopped"):
        life.require_ready()
    life.starting()
    assert life.state is EngineState.STARTING


async def test_loads_of_several_engines_never_overlap() -> None:
    """accelerate's ``init_empty_weights`` patches torch for the whole process: two concurrent
    ``from_pretrained`` calls broke each other ("Cannot copy out of meta tensor")."""

    running, most = 0, 0
    guard = threading.Lock()

    def load() -> None:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with guard:
            running -= 1

    await asyncio.gather(*(EngineLifecycle(f"e{i}").load(load) for i in range(4)))
    assert most == 1
