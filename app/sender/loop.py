"""The sender's loop: claim due deliveries, send each, record the attempt.

One loop per process. It keeps at most ``CLICKTRACK_POSTBACK_SENDER_CONCURRENCY``
deliveries in flight, and at most ``CLICKTRACK_POSTBACK_ENDPOINT_CONCURRENCY`` per endpoint:
an endpoint at its limit is left out of the next claims (``busy``), and a delivery claimed
for it past the limit is released at once, so a slow endpoint holds only its own slots and
never delays another's deliveries. The limit is per sender process: n senders may send n
times as many at once to one endpoint.

Claims are leased (``app/postbacks/queue.py``): a sender that dies holding deliveries
leaves them to another when the lease ends; each is sent again, with the same event id.

Beside the loop, every sender applies the retention (``CLICKTRACK_POSTBACK_RETENTION_DAYS``,
``app/postbacks/retention.py``): a first pass soon after start, then one an hour. Several
senders may prune at once; their batches take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import asyncpg

from app.core.db import Pool, unreachable
from app.core.metrics import (
    POSTBACK_ATTEMPTS,
    POSTBACK_OLDEST_PENDING,
    POSTBACK_PENDING,
    POSTBACK_ROWS_PRUNED,
)
from app.postbacks import queue, retention
from app.postbacks.queue import Attempt, Claimed, Outcome
from app.postbacks.retries import next_try
from app.sender.http import HttpSender
from app.settings import Settings

log = logging.getLogger("clicktrack.sender")

# How often an idle sender looks for due deliveries (s): the delay of a new event at worst.
POLL_S = 0.2
# How often the pending gauges are read from Postgres (s).
STATS_EVERY_S = 5.0
# How long to wait after Postgres failed before trying again (s).
DB_RETRY_S = 1.0
# The retention: the first pass this long after start (s), then one every interval; after
# a failed pass, another after the retry delay.
RETENTION_FIRST_S = 5.0
RETENTION_INTERVAL_S = 3600.0
RETENTION_RETRY_S = 60.0


def lease_s(settings: Settings) -> float:
    """How long a claim is held: an attempt's bound twice over, and 2 s to record it."""
    return 2 * settings.postback_timeout_ms / 1000 + 2


class Sender:
    def __init__(self, settings: Settings, pool: Pool, http: HttpSender) -> None:
        self.settings = settings
        self.pool = pool
        self.http = http
        self.lease_s = lease_s(settings)
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_endpoint: dict[int, int] = {}
        self._room = asyncio.Event()

    def _busy(self) -> list[int]:
        limit = self.settings.postback_endpoint_concurrency
        return [e for e, n in self._per_endpoint.items() if n >= limit]

    async def _claim(self, room: int) -> list[Claimed]:
        async with self.pool.acquire() as conn:
            claimed = await queue.claim(conn, room, self.lease_s, self._busy())
            limit = self.settings.postback_endpoint_concurrency
            start, extra = [], []
            for delivery in claimed:
                taken = self._per_endpoint.get(delivery.endpoint_id, 0)
                if taken >= limit:
                    extra.append(delivery.id)
                    continue
                self._per_endpoint[delivery.endpoint_id] = taken + 1
                start.append(delivery)
            await queue.release(conn, extra)
        return start

    def _start(self, delivery: Claimed) -> None:
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)

        def finished(done: asyncio.Task[None]) -> None:
            self._tasks.discard(done)
            left = self._per_endpoint.get(delivery.endpoint_id, 1) - 1
            if left > 0:
                self._per_endpoint[delivery.endpoint_id] = left
            else:
                self._per_endpoint.pop(delivery.endpoint_id, None)
            self._room.set()

        task.add_done_callback(finished)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set; then the deliveries in flight are finished and recorded."""
        stats = asyncio.create_task(self._keep_stats(stop))
        pruning = asyncio.create_task(self._keep_pruning(stop))
        try:
            while not stop.is_set():
                self._room.clear()
                room = self.settings.postback_sender_concurrency - len(self._tasks)
                claimed: list[Claimed] = []
                if room > 0:
                    try:
                        claimed = await self._claim(room)
                    except Exception as exc:
                        if not _db_failure(exc):
                            raise
                        log.warning("sender_claim_failed", extra={"error": str(exc)})
                        await _wait(stop, DB_RETRY_S)
                        continue
                for delivery in claimed:
                    self._start(delivery)
                if claimed and len(claimed) == room:
                    continue  # more may be due: claim again at once
                await _wait_any(stop, self._room, POLL_S)
        finally:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            # A pass cut short rolls its batch back; the next sender's pass does the rest.
            stats.cancel()
            pruning.cancel()
            await asyncio.gather(stats, pruning, return_exceptions=True)

    async def _deliver(self, delivery: Claimed) -> None:
        try:
            attempt = await self.http.attempt(delivery)
        except Exception:  # a bug: kept as a failed attempt, the loop goes on
            log.exception("sender_attempt_crashed", extra={"delivery_id": delivery.id})
            attempt = Attempt(Outcome.retry, 0, error="internal error while sending")
        next_at = None
        if attempt.outcome is not Outcome.delivered:
            s = self.settings
            next_at = next_try(
                delivery.attempts,
                delivery.queued_at,
                datetime.now(UTC),
                first_s=s.postback_retry_first_s,
                max_s=s.postback_retry_max_s,
                give_up_s=s.postback_give_up_s,
            )
            if next_at is None:
                attempt = Attempt(
                    Outcome.failed,
                    attempt.latency_ms,
                    attempt.status_code,
                    attempt.response,
                    attempt.error,
                )
        POSTBACK_ATTEMPTS.labels(attempt.outcome.value).inc()
        await self._record(delivery, attempt, next_at)

    async def _record(self, delivery: Claimed, attempt: Attempt, next_at: datetime | None) -> None:
        """Record the attempt, trying again while Postgres is out of reach; past the lease,
        another sender may send it again (at least once, never lost)."""
        deadline = asyncio.get_running_loop().time() + self.lease_s
        while True:
            try:
                async with self.pool.acquire() as conn:
                    await queue.record_attempt(conn, delivery.id, attempt, next_at)
                return
            except asyncpg.DataError as exc:
                # Text the receiver sent that Postgres refuses (HttpSender cleans what it
                # knows of): record the attempt without it rather than send it again.
                log.warning(
                    "sender_text_refused", extra={"delivery_id": delivery.id, "error": str(exc)}
                )
                attempt = dataclasses.replace(
                    attempt, response=None, error="the answer's text could not be stored"
                )
            except Exception as exc:
                if not _db_failure(exc) or asyncio.get_running_loop().time() > deadline:
                    log.error(
                        "sender_record_failed",
                        extra={"delivery_id": delivery.id, "error": str(exc)},
                    )
                    return
                await asyncio.sleep(0.2)

    async def _keep_stats(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                async with self.pool.acquire() as conn:
                    pending, age = await queue.pending_stats(conn)
                POSTBACK_PENDING.set(pending)
                POSTBACK_OLDEST_PENDING.set(age)
            await _wait(stop, STATS_EVERY_S)

    async def apply_retention(self) -> retention.Pruned | None:
        """One retention pass now: delete what is older than ``postback_retention_days``
        (``retention.prune``), log and count it; None when the retention is 0 (keep all)."""
        days = self.settings.postback_retention_days
        if not days:
            return None
        cutoff = datetime.now(UTC) - timedelta(days=days)
        async with self.pool.acquire() as conn:
            pruned = await retention.prune(conn, cutoff)
        for table, count in pruned.by_table().items():
            if count:
                POSTBACK_ROWS_PRUNED.labels(table).inc(count)
        if pruned.total:
            log.info(
                "postback_retention_applied",
                extra={**pruned.by_table(), "before": cutoff.isoformat()},
            )
        return pruned

    async def _keep_pruning(self, stop: asyncio.Event) -> None:
        delay = RETENTION_FIRST_S
        while True:
            await _wait(stop, delay)
            if stop.is_set():
                return
            delay = RETENTION_INTERVAL_S
            try:
                await self.apply_retention()
            except Exception as exc:  # never a reason to stop sending
                delay = RETENTION_RETRY_S
                if _db_failure(exc):
                    log.warning("postback_retention_failed", extra={"error": str(exc)})
                else:
                    log.exception("postback_retention_crashed")


def _db_failure(exc: BaseException) -> bool:
    return unreachable(exc) or isinstance(exc, asyncpg.PostgresError)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait_any(stop: asyncio.Event, other: asyncio.Event, seconds: float) -> None:
    waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(other.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
