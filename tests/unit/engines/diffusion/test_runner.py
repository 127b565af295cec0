"""Progress of a long image batch: every step at debug, at info every few seconds."""

from __future__ import annotations

import logging

import pytest

from blaze_ai.engines.diffusion.runner import ProgressLog
from tests.fakes import FakeClock


def test_long_batches_log_progress_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="blaze_ai.engines.diffusion.runner")
    clock = FakeClock()
    progress = ProgressLog("sd/0", interval_s=5.0, clock=clock)
    progress.begin(images=4, steps=4)
    for step in range(1, 5):
        clock.advance(3.0)
        progress(step, 4)
    lines = [(r.levelno, r.__dict__["step"]) for r in caplog.records]
    # 3 s, 6 s (info: 5 s since the start), 9 s, 12 s (info: 6 s since the last, and the end)
    assert lines == [
        (logging.DEBUG, 1),
        (logging.INFO, 2),
        (logging.DEBUG, 3),
        (logging.INFO, 4),
    ]
    assert all(
        r.__dict__["images"] == 4 and r.__dict__["deployment"] == "sd/0" for r in caplog.records
    )
    assert (progress.step, progress.steps) == (4, 4)


def test_short_batches_stay_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="blaze_ai.engines.diffusion.runner")
    progress = ProgressLog("sd/0", interval_s=5.0, clock=FakeClock())
    progress.begin(images=1, steps=2)
    progress(1, 2)
    progress(2, 2)
    assert {r.levelno for r in caplog.records} == {logging.DEBUG}
