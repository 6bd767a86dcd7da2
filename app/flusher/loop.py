"""The flusher's consumer-group loop: click stream -> ``clicks`` table.

Contract: at least once from the stream, exactly once in the table. An entry is acked only
after its row is committed (or after it went to the dead letters or the parked entries, in
the MULTI of its ack: ``app/flusher/entries.py``), so a crash or an error at any point
leaves it pending: this consumer reads its own pending entries again first (on start and
after every error), and another consumer claims them after ``claim_idle_ms``. The sink
ignores clicks already stored, so a second delivery never makes a second row.

Every ``consumer_prune_idle_s`` or so, a loop also deletes the consumers of its group that
have been idle that long and hold no pending entry (pods long gone; never its own).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.clicks import stream
from app.clicks.record import READERS, Click, Reader
from app.clicks.stream import DeadLetter, Entry, Parked
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.core.metrics import (
    FLUSHER_BATCH_SIZE,
    FLUSHER_CLAIMED,
    FLUSHER_CONSUMERS_PRUNED,
    FLUSHER_DEAD_LETTERS,
    FLUSHER_DUPLICATES,
    FLUSHER_LAG,
    FLUSHER_PARKED,
    FLUSHER_RETRIES,
    FLUSHER_ROWS,
    FLUSHER_WRITE_SECONDS,
    STREAM_LENGTH,
    STREAM_PENDING,
)
from app.core.redis import REDIS_UNAVAILABLE
from app.dimensions.resolve import Resolver
from app.flusher.dimensions import resolver_for
from app.flusher.entries import count_flags, sort_entries, to_rows
from app.flusher.folding import FoldSchedule
from app.flusher.quality import ClickClassifier
from app.flusher.sink import ClickSink, PartitionError, Row, row_day
from app.settings import Settings

log = logging.getLogger("clicktrack.flusher")

# Partitions are created for days in [today - BACK, today + AHEAD]; a click dated outside
# (a clock gone wrong, a very old replay) goes to the default partition, which
# ensure_click_partition() empties later, instead of littering the schema.
PARTITION_DAYS_BACK = 31
PARTITION_DAYS_AHEAD = 2
PARTITION_RETRY_S = 30.0
TRIM_INTERVAL_S = 1.0
# Batches a loop may have in Postgres at once. One more than one: Postgres writes a batch
# while this process classifies the next, and a second writer keeps both Postgres's and
# Redis's cores busy. Batches are still read and classified one after the other, in stream
# order, which the duplicate windows need.
WRITERS = 2
RETENTION_INTERVAL_S = 3600.0
PRUNE_INTERVAL_S = 60.0  # at most; a shorter consumer_prune_idle_s checks as often as that
# Outages, not bugs: retried without a traceback in the log.
_EXPECTED_ERRORS = (
    *REDIS_UNAVAILABLE,
    OSError,
    RedisConnectionError,
    RedisTimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


@dataclass
class Stats:
    batches: int = 0
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    parked: int = 0
    claimed: int = 0
    pruned: int = 0


@dataclass
class Batch:
    """Entries read from the stream, decoded and classified, ready to be stored."""

    entries: list[Entry]
    clicks: list[Click]
    rows: list[Row]
    dead: list[DeadLetter]
    parked: list[Parked]


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Flusher:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        pool: Pool,
        *,
        consumer: str | None = None,
        shard: int = 0,
        backoff_s: tuple[float, float] = (0.1, 5.0),
        writers: int = WRITERS,
        readers: Mapping[int, Reader] = READERS,
        resolver: Resolver | None = None,
    ) -> None:
        """``readers``: the record majors this flusher reads (others are parked).
        ``resolver``: resolves the traffic dimensions; by default the process's one
        (``resolver_for``: None when ``CLICKTRACK_DIMENSIONS`` is off), built here so that
        an unusable ``CLICKTRACK_GEO_DATABASE`` stops the flusher at startup."""
        self.settings = settings
        # First: an unusable geo database is refused before anything else is set up.
        self._resolver = resolver if resolver is not None else resolver_for(settings)
        self.keys = RedisKeys(settings.key_prefix, shard)
        self.consumer = consumer or settings.consumer_name or default_consumer_name()
        self.stats = Stats()
        self._redis = redis
        self._sink = ClickSink(pool, zone=settings.period_timezone)
        self._classifier = ClickClassifier(settings, redis, self.keys)
        self._backoff_s = backoff_s
        self._partitions: dict[date, float] = {}  # day -> when to try it again (inf: exists)
        self._group_ready = False
        self._own_pending = True
        self._pending_cursor = b"0"
        self._claim_cursor = b"0-0"
        self._next_batch: Batch | None = None  # read and classified while one is written
        self._writers = writers
        self._readers = readers
        self._storing: collections.deque[asyncio.Task[None]] = collections.deque()  # oldest first
        self._next_claim = 0.0
        self._next_trim = 0.0
        self._folds = FoldSchedule(self._sink.fold)
        self._next_retention = 0.0
        # The first pruning waits a while: a fleet restarted at once does not prune at once.
        self._next_prune = time.monotonic() + random.uniform(0.5, 1.0) * self._prune_interval()
        self._acked_since_trim = False

    async def run(self, stop: asyncio.Event) -> None:
        """Flush until ``stop`` is set; the batch in hand is written and acked first."""
        log.info("flusher_started", extra={"consumer": self.consumer})
        failures = 0
        # Once stopped, the batches being written and the one read ahead are still written.
        while not stop.is_set() or self._next_batch is not None or self._storing:
            try:
                await self.run_once(read_ahead=not stop.is_set())
            except Exception as exc:
                failures += 1
                FLUSHER_RETRIES.inc()
                delay = min(self._backoff_s[1], self._backoff_s[0] * 2 ** (failures - 1))
                delay *= random.uniform(0.5, 1.0)
                log.warning(
                    "flusher_retry",
                    exc_info=not isinstance(exc, _EXPECTED_ERRORS),
                    extra={"error": f"{type(exc).__name__}: {exc}", "attempt": failures},
                )
                await self._restart()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            else:
                if failures:
                    log.info("flusher_recovered", extra={"attempts": failures})
                failures = 0
        with contextlib.suppress(Exception):  # leave no counts unfolded; best effort
            await self._folds.maybe(idle=True)
        if self._acked_since_trim:  # leave the stream short; best effort, we are leaving
            with contextlib.suppress(Exception):
                await stream.trim_acknowledged(self._redis, self.keys)
        await self._classifier.close()
        log.info("flusher_stopped", extra={"consumer": self.consumer, **asdict(self.stats)})

    async def run_once(self, *, read_ahead: bool = True) -> int:
        """One step: read a batch (own pending entries first, then idle ones claimed from
        other consumers when due, then new ones), classify it, store it, ack it; trim when
        due. Returns the number of entries handled.

        With ``read_ahead``, the next batch is read and classified while this one is
        written, so that Redis, the flusher and Postgres work at the same time, and up to
        ``writers`` batches are written at once: the step returns once the batch of
        ``writers - 1`` steps before is stored. Without it, or when there is nothing to
        read, every batch in hand is stored before the step returns."""
        if not self._group_ready:
            await stream.ensure_group(self._redis, self.keys)
            self._group_ready = True
        today = datetime.now(UTC).date()
        horizon = range(PARTITION_DAYS_AHEAD + 1)
        await self._ensure_partitions(today + timedelta(days=n) for n in horizon)
        batch, self._next_batch = self._next_batch, None
        if batch is None:
            batch = await self._read_batch()
        if not batch.entries or not read_ahead:
            await self._finish_storing()
            if batch.entries:
                await self._store(batch)
        else:
            upcoming = asyncio.create_task(self._read_batch())
            self._storing.append(asyncio.create_task(self._store(batch)))
            try:
                while len(self._storing) >= self._writers:
                    await self._storing.popleft()
            except BaseException as exc:
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)
                if not isinstance(exc, Exception):  # cancelled: so are the writes
                    for task in self._storing:
                        task.cancel()
                    await asyncio.gather(*self._storing, return_exceptions=True)
                    self._storing.clear()
                raise
            self._next_batch = await upcoming
        await self._maybe_trim()
        await self._folds.maybe(idle=not batch.entries)
        await self._maybe_apply_retention()
        await self._maybe_prune()
        return len(batch.entries)

    async def _finish_storing(self) -> None:
        """Wait for the batches being written; the first failure is raised once all ended."""
        storing, self._storing = self._storing, collections.deque()
        for result in await asyncio.gather(*storing, return_exceptions=True):
            if isinstance(result, Exception):
                raise result

    async def _restart(self) -> None:
        """After an error: nothing in hand is trusted, start again from our pending list
        (once the batches being written have ended: what they did not ack is pending)."""
        with contextlib.suppress(Exception):
            await self._finish_storing()
        with contextlib.suppress(Exception):
            await self._folds.end()
        self._group_ready = False
        self._own_pending = True
        self._pending_cursor = b"0"
        self._claim_cursor = b"0-0"
        self._next_batch = None
        self._partitions = {d: t for d, t in self._partitions.items() if t == float("inf")}

    async def _read_batch(self) -> Batch:
        entries = await self._read_entries()
        found = sort_entries(entries, self._readers)
        clicks = [click for _, _, click in found.clicks]
        await self._classifier.classify(clicks)
        rows = to_rows(found.clicks, found.dead, self._resolver)
        return Batch(entries, clicks, rows, found.dead, found.parked)

    async def _read_entries(self) -> list[Entry]:
        count = self.settings.flush_batch_size
        if self._own_pending:
            entries = await stream.read_own_pending(
                self._redis, self.keys, self.consumer, count, after=self._pending_cursor
            )
            if entries:
                # A batch read ahead is still pending: the next read starts after it.
                self._pending_cursor = entries[-1][0]
                return entries
            self._own_pending = False
        if time.monotonic() >= self._next_claim:
            entries = await self._claim(count)
            if entries:
                return entries
        return await stream.read_new(
            self._redis, self.keys, self.consumer, count, self.settings.flush_block_ms
        )

    async def _claim(self, count: int) -> list[Entry]:
        idle_ms = self.settings.claim_idle_ms
        entries, self._claim_cursor = await stream.claim_idle(
            self._redis, self.keys, self.consumer, idle_ms, count, self._claim_cursor
        )
        if self._claim_cursor == b"0-0":  # scanned the whole pending list: rest a while
            self._next_claim = time.monotonic() + idle_ms / 2000
        if entries:
            self.stats.claimed += len(entries)
            FLUSHER_CLAIMED.inc(len(entries))
            log.info("entries_claimed", extra={"count": len(entries)})
        return entries

    async def _store(self, batch: Batch) -> None:
        rows, dead = batch.rows, batch.dead
        await self._ensure_partitions({row_day(row) for row in rows})
        started = time.perf_counter()
        new = await self._sink.write(rows)
        self._folds.written()
        FLUSHER_WRITE_SECONDS.observe(time.perf_counter() - started)
        entry_ids = [entry_id for entry_id, _ in batch.entries]
        await stream.ack(self._redis, self.keys, entry_ids, dead, batch.parked)
        self._acked_since_trim = True
        self.stats.batches += 1
        self.stats.written += new
        self.stats.duplicates += len(rows) - new
        FLUSHER_BATCH_SIZE.observe(len(entry_ids))
        FLUSHER_ROWS.inc(new)
        FLUSHER_DUPLICATES.inc(len(rows) - new)
        count_flags(batch.clicks)
        if dead:
            self.stats.dead_lettered += len(dead)
            FLUSHER_DEAD_LETTERS.inc(len(dead))
            log.warning(
                "entries_dead_lettered", extra={"count": len(dead), "reason": dead[0].reason}
            )
        if batch.parked:
            self.stats.parked += len(batch.parked)
            FLUSHER_PARKED.inc(len(batch.parked))
            reason = batch.parked[0].reason
            log.warning("entries_parked", extra={"count": len(batch.parked), "reason": reason})

    async def _ensure_partitions(self, days: Iterable[date]) -> None:
        """Create missing day partitions within the window. A failure is logged, not raised:
        the default partition takes the rows meanwhile."""
        today = datetime.now(UTC).date()
        lowest = today - timedelta(days=PARTITION_DAYS_BACK)
        highest = today + timedelta(days=PARTITION_DAYS_AHEAD)
        now = time.monotonic()
        for day in sorted(days):
            if not lowest <= day <= highest or self._partitions.get(day, 0.0) > now:
                continue
            try:
                await self._sink.ensure_partition(day)
            except PartitionError as exc:
                self._partitions[day] = now + PARTITION_RETRY_S
                log.warning("partition_failed", extra={"day": day.isoformat(), "error": str(exc)})
            else:
                self._partitions[day] = float("inf")

    async def _maybe_apply_retention(self) -> None:
        days = self.settings.click_retention_days
        now = time.monotonic()
        if not days or now < self._next_retention:
            return
        self._next_retention = now + RETENTION_INTERVAL_S
        cutoff = datetime.now(UTC).date() - timedelta(days=days)
        dropped = await self._sink.drop_partitions_before(cutoff)
        if dropped:
            log.info("click_partitions_dropped", extra={"count": dropped, "before": str(cutoff)})

    def _prune_interval(self) -> float:
        return min(PRUNE_INTERVAL_S, self.settings.consumer_prune_idle_s)

    async def _maybe_prune(self) -> None:
        """Delete consumers of the group idle for ``consumer_prune_idle_s`` with nothing
        pending (``stream.prune_consumers``: atomic, never this one)."""
        idle_s, now = self.settings.consumer_prune_idle_s, time.monotonic()
        if not idle_s or now < self._next_prune:
            return
        self._next_prune = now + self._prune_interval()
        try:
            pruned = await stream.prune_consumers(
                self._redis, self.keys, [self.consumer], int(idle_s * 1000)
            )
        except ResponseError as exc:  # refused (a Redis without scripting?): not worth a retry
            log.warning("consumer_prune_failed", extra={"error": str(exc)})
            return
        for name, idle_ms in pruned:
            log.info("consumer_pruned", extra={"consumer": name, "idle_ms": idle_ms})
        self.stats.pruned += len(pruned)
        FLUSHER_CONSUMERS_PRUNED.inc(len(pruned))

    async def _maybe_trim(self) -> None:
        """Once a second: trim what was acked, and report the backlog."""
        now = time.monotonic()
        if now < self._next_trim:
            return
        self._next_trim = now + TRIM_INTERVAL_S
        if self._acked_since_trim:
            self._acked_since_trim = False
            await stream.trim_acknowledged(self._redis, self.keys)
        backlog = await stream.backlog(self._redis, self.keys)
        shard = str(self.keys.shard)
        STREAM_LENGTH.labels(shard).set(backlog.length)
        STREAM_PENDING.labels(shard).set(backlog.pending)
        lag = 0.0 if backlog.oldest_ms is None else max(0.0, time.time() - backlog.oldest_ms / 1000)
        FLUSHER_LAG.labels(shard).set(lag)
