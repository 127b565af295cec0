"""The supervisor restarts failed engines with exponential back-off (fake clock, no sleeping)."""

from __future__ import annotations

from blaze_ai.engines.base import EngineState
from blaze_ai.gateway.deployment import Deployment
from blaze_ai.gateway.supervisor import Supervisor
from tests.fakes import FakeClock, ScriptedEngine


async def test_failed_engine_is_restarted_with_backoff() -> None:
    engine = ScriptedEngine("e", state=EngineState.FAILED, start_failures=2)
    deployment = Deployment("m/0", engine)  # type: ignore[arg-type]
    clock = FakeClock()
    supervisor = Supervisor([deployment], base_s=1.0, max_s=8.0, clock=clock)

    await supervisor.check_once()  # notices the failure, schedules a restart in 1 s
    assert engine.starts == 0
    clock.advance(1.0)
    await supervisor.check_once()  # restart 1 fails -> next in 2 s
    assert (engine.starts, deployment.restarts, engine.state) == (1, 1, EngineState.FAILED)
    clock.advance(1.0)
    await supervisor.check_once()
    assert engine.starts == 1  # still backing off
    clock.advance(1.0)
    await supervisor.check_once()  # restart 2 fails -> next in 4 s
    assert engine.starts == 2
    clock.advance(4.0)
    await supervisor.check_once()  # restart 3 succeeds
    assert (engine.starts, deployment.restarts, engine.state) == (3, 3, EngineState.READY)
    assert deployment.routable


async def test_ready_engines_are_left_alone() -> None:
    engine = ScriptedEngine("e")
    supervisor = Supervisor([Deployment("m/0", engine)], clock=FakeClock())  # type: ignore[arg-type]
    await supervisor.check_once()
    assert engine.starts == 0
