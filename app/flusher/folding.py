"""When a flusher loop folds the rollup deltas its batches appended (``rollups.fold``).

Once a second, in the background: a fold of a second's deltas takes a good part of a
second's Postgres time, which the batches being read and written need not wait for (held in
the loop, it cost the drain 0.87x: docs/performance.md). When the loop finds nothing to
read, or stops, at once and waited for: a batch's counts reach the reports about a second
after its rows at most, and a test that drained the stream reads them all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from app.core.metrics import ROLLUP_FOLD_SECONDS, ROLLUP_FOLDS

# The rollup deltas are folded this often (and whenever the loop has nothing to read): reports
# by day, link or dimension lag the stored clicks by about as much.
FOLD_INTERVAL_S = 1.0


class FoldSchedule:
    def __init__(self, fold: Callable[[], Coroutine[Any, Any, int]]) -> None:
        """``fold``: folds what is pending (``ClickSink.fold``), returns delta rows folded."""
        self._fold = fold
        self._next = 0.0
        self._unfolded = False  # batches written since the last fold began
        self._folding: asyncio.Task[int] | None = None
        for outcome in ("ok", "failed"):  # at 0 from the start: an alert on "no ok" sees 0
            ROLLUP_FOLDS.labels(outcome)

    def written(self) -> None:
        """A batch's deltas were committed."""
        self._unfolded = True

    async def maybe(self, *, idle: bool) -> None:
        """Start a fold when one is due (none in progress, a second since the last one
        began, or ``idle``); with ``idle``, wait for it. A failed fold is raised here, from
        the next call (the loop's retry), and its deltas are folded again later."""
        if self._folding is not None and (idle or self._folding.done()):
            await self.end()
        now = time.monotonic()
        if self._folding is not None or not self._unfolded:
            return
        if idle or now >= self._next:
            self._unfolded = False
            self._next = now + FOLD_INTERVAL_S
            self._folding = asyncio.create_task(self._timed())
            if idle:
                await self.end()

    async def _timed(self) -> int:
        started = time.perf_counter()
        try:
            folded = await self._fold()
        except Exception:
            ROLLUP_FOLDS.labels("failed").inc()
            raise
        ROLLUP_FOLDS.labels("ok").inc()
        ROLLUP_FOLD_SECONDS.observe(time.perf_counter() - started)
        return folded

    async def end(self) -> None:
        """Wait for the fold in progress, if any; raise its failure."""
        folding, self._folding = self._folding, None
        if folding is None:
            return
        try:
            await folding
        except Exception:
            self._unfolded = True
            raise
