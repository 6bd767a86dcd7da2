"""When a flusher loop folds its rollup deltas: once a second in the background, at once when
idle, never two at a time, and a failed fold tried again."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from app.flusher.folding import FoldSchedule


class Folds:
    """A fold that records its calls; it fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.failing = False
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            if self.failing:
                raise ConnectionError("postgres went away")
            return 1
        finally:
            self.running -= 1


async def test_nothing_written_nothing_folded() -> None:
    folds = Folds()
    schedule = FoldSchedule(folds)
    # Both outcomes exported from the start, so "no ok fold for 10 minutes" can be alerted on.
    assert REGISTRY.get_sample_value("clicktrack_rollup_folds_total", {"outcome": "ok"}) is not None
    assert (
        REGISTRY.get_sample_value("clicktrack_rollup_folds_total", {"outcome": "failed"})
        is not None
    )
    await schedule.maybe(idle=True)
    await schedule.maybe(idle=False)
    assert folds.calls == 0


async def test_a_busy_loop_folds_in_the_background_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    folds = Folds()
    schedule = FoldSchedule(folds)
    schedule.written()
    await schedule.maybe(idle=False)  # due: started, not waited for
    await asyncio.sleep(0)
    assert folds.calls == 1 and folds.running == 1
    schedule.written()
    await schedule.maybe(idle=False)  # one in progress: no second one
    assert folds.most_at_once == 1
    folds.release.set()
    await asyncio.sleep(0)
    now[0] += 0.5
    await schedule.maybe(idle=False)  # done, but not a second yet
    assert folds.calls == 1
    now[0] += 0.6
    await schedule.maybe(idle=False)
    await asyncio.sleep(0)
    assert folds.calls == 2


async def test_idle_folds_at_once_and_waits() -> None:
    folds = Folds()
    folds.release.set()
    schedule = FoldSchedule(folds)
    schedule.written()
    await schedule.maybe(idle=True)
    assert folds.calls == 1 and folds.running == 0
    await schedule.maybe(idle=True)  # nothing written since
    assert folds.calls == 1


def folds_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("clicktrack_rollup_folds_total", {"outcome": outcome}) or 0.0


async def test_a_failed_fold_is_raised_and_tried_again() -> None:
    failed, ok = folds_counted("failed"), folds_counted("ok")
    folds = Folds()
    folds.failing = True
    folds.release.set()
    schedule = FoldSchedule(folds)
    schedule.written()
    with pytest.raises(ConnectionError):
        await schedule.maybe(idle=True)
    folds.failing = False
    await schedule.maybe(idle=True)  # no batch since, but the deltas are still pending
    assert folds.calls == 2
    assert (folds_counted("failed") - failed, folds_counted("ok") - ok) == (1, 1)
