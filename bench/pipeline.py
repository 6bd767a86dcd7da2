"""Behind the redirect: the flusher's drain rate, end-to-end lag, Redis memory, worker RSS.

- *drain*: the stream is pre-filled with N realistic click records, then one
  ``python -m app.flusher`` is started and timed from its first delivered entry to the
  moment every entry is acked (an entry is acked only after its row is committed); the row
  count must then be N.
- *lag*: sampled every 100 ms while a paced load runs, as the age of the oldest click not yet
  in Postgres (the oldest entry pending in the consumer group, or else the first not yet
  delivered): no click is older than that when it lands, so its p99 bounds the clicks' p99.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from app.clicks import stream
from app.core.keys import RedisKeys
from bench.cpu import CpuMeter, tree_cpu_seconds
from bench.services import BenchError, Process
from bench.traffic import LinkRow, click_payloads

LAG_SAMPLE_S = 0.1


async def used_memory(redis: aioredis.Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def prefill(
    redis: aioredis.Redis, keys: RedisKeys, links: Sequence[LinkRow], n: int
) -> tuple[bytes, int]:
    """Append n click records; return the id of the last one and their total size."""
    size = 0

    def sized(payloads: Iterable[bytes]) -> Iterator[bytes]:
        nonlocal size
        for payload in payloads:
            size += len(payload)
            yield payload

    ids = await stream.add_many(redis, keys, sized(click_payloads(links, n)))
    return ids[-1], size


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _group(redis: aioredis.Redis, keys: RedisKeys) -> dict[str, object] | None:
    try:
        groups = await redis.xinfo_groups(keys.clicks_stream)
    except aioredis.ResponseError:
        return None
    for group in groups:
        if _text(group["name"]) == keys.consumer_group:
            return dict(group)
    return None


def _id(value: object) -> tuple[int, int]:
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)


@dataclass
class DrainResult:
    clicks: int
    seconds: float  # first delivery to the last ack and the last rollup delta folded
    clicks_per_s: float
    rows: int
    counted: int  # clicks in the traffic rollups (traffic_link_days) added by the drain
    startup_s: float  # flusher process start to its first delivery
    fill_s: float  # pre-filling the stream (not part of the drain)
    redis_baseline_bytes: int
    redis_filled_bytes: int
    redis_after_bytes: int  # after the drain and the trim, duplicate windows included
    stream_entries_after: int
    stream_bytes_after: int  # MEMORY USAGE of the (empty) stream and its consumer group
    duplicate_window_keys: int  # ZSETs the duplicate detection keeps for ~10 minutes
    redis_after_windows_bytes: int  # the same once those windows have expired
    cpu_cores: dict[str, float] = field(default_factory=dict)  # average use while draining
    # Cores used by processes other than ours while draining, measured over the same window
    # as cpu_cores (Postgres backends that exit with the flusher are still counted).
    foreign_cores: float = 0.0
    payload_bytes_per_click: float = 0.0  # the stream record (a spooled click adds ~3 bytes)
    postgres_bytes_per_row: float = 0.0  # growth of the clicks table, indexes included

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


async def _wait_drained(
    redis: aioredis.Redis, keys: RedisKeys, last_id: bytes, flusher: Process, within_s: float
) -> tuple[float, float]:
    """(monotonic time of the first delivery, of the last ack)."""
    last = _id(last_id)
    first_delivery: float | None = None
    deadline = time.monotonic() + within_s
    while True:
        group = await _group(redis, keys)
        now = time.monotonic()
        if group is not None:
            delivered = _id(group["last-delivered-id"])
            if first_delivery is None and delivered > (0, 0):
                first_delivery = now
            if delivered >= last and int(str(group["pending"])) == 0:
                return first_delivery or now, now
        if not flusher.running():
            raise BenchError(f"the flusher exited during the drain:\n{flusher.tail()}")
        if now > deadline:
            raise BenchError(
                f"the drain did not finish within {within_s:.0f}s; the flusher's log ends:\n"
                + flusher.tail(5)
            )
        await asyncio.sleep(0.02)


async def _settled_memory(redis: aioredis.Redis) -> int:
    """used_memory once Redis has shrunk its hash tables after mass deletes (its cron does
    that a little at a time): when two readings a second apart differ by under 64 KiB."""
    previous = await used_memory(redis)
    for _ in range(10):
        await asyncio.sleep(1.0)
        current = await used_memory(redis)
        if abs(current - previous) < 64 * 1024:
            return current
        previous = current
    return previous


async def _clicks_bytes(database_url: str) -> int:
    """Disk used by the clicks table: every partition, indexes and TOAST included."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                "WHERE inhparent = 'clicks'::regclass"
            )
        )
    finally:
        await conn.close()


async def _count_rows(database_url: str) -> tuple[int, int]:
    """Rows in ``clicks``, clicks counted in ``traffic_link_days``."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = int(await conn.fetchval("SELECT count(*) FROM clicks"))
        counted = await conn.fetchval("SELECT coalesce(sum(clicks), 0) FROM traffic_link_days")
        return rows, int(counted)
    finally:
        await conn.close()


async def _wait_folded(database_url: str, flusher: Process, within_s: float) -> float:
    """Monotonic time at which no rollup delta is left to fold (the flusher folds once a
    second, and when it has nothing to read): the drain's clicks are then in the reports."""
    conn = await asyncpg.connect(database_url)
    deadline = time.monotonic() + within_s
    try:
        while await conn.fetchval("SELECT EXISTS (SELECT 1 FROM traffic_dimension_deltas)"):
            if not flusher.running() or time.monotonic() > deadline:
                raise BenchError(f"the rollup deltas were not folded:\n{flusher.tail(5)}")
            await asyncio.sleep(0.02)
        return time.monotonic()
    finally:
        await conn.close()


async def _drop_windows(redis: aioredis.Redis, keys: RedisKeys) -> int:
    found = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=f"{keys.prefix}:seen:*", count=10_000):
        batch.append(key)
        if len(batch) >= 10_000:
            found += await redis.unlink(*batch)
            batch = []
    if batch:
        found += await redis.unlink(*batch)
    return found


async def drain(
    redis_url: str,
    database_url: str,
    keys: RedisKeys,
    links: Sequence[LinkRow],
    n: int,
    start_flusher: Callable[[], Process],
    store_pids: Mapping[str, Sequence[int]],
    within_s: float,
) -> DrainResult:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        await redis.unlink(keys.clicks_stream)
        await _drop_windows(redis, keys)
        rows_before, counted_before = await _count_rows(database_url)
        bytes_before = await _clicks_bytes(database_url)
        baseline = await used_memory(redis)
        fill_started = time.monotonic()
        last_id, payload_bytes = await prefill(redis, keys, links, n)
        fill_s = time.monotonic() - fill_started
        filled = await used_memory(redis)
        started = time.monotonic()
        flusher = start_flusher()
        meter = CpuMeter(lambda: [flusher.pid, *(p for pids in store_pids.values() for p in pids)])
        meter.start()
        try:
            cpu_before = {"flusher": 0.0}
            cpu_before |= {name: tree_cpu_seconds(pids) for name, pids in store_pids.items()}
            first, _ = await _wait_drained(redis, keys, last_id, flusher, within_s)
            done = await _wait_folded(database_url, flusher, within_s)
            cpu_after = {"flusher": tree_cpu_seconds([flusher.pid])}
            cpu_after |= {name: tree_cpu_seconds(pids) for name, pids in store_pids.items()}
            foreign = meter.stop().foreign_cores
            seconds = max(done - first, 1e-6)
            rows, counted = await _count_rows(database_url)
            rows, counted = rows - rows_before, counted - counted_before
            row_bytes = await _clicks_bytes(database_url) - bytes_before
            # The flusher trims acked entries every second.
            for _ in range(50):
                if not await redis.xlen(keys.clicks_stream):
                    break
                await asyncio.sleep(0.2)
            entries_after = int(await redis.xlen(keys.clicks_stream))
        finally:
            flusher.stop()
        after = await used_memory(redis)
        stream_bytes = int(await redis.memory_usage(keys.clicks_stream) or 0)
        windows = await _drop_windows(redis, keys)
        after_windows = await _settled_memory(redis)
        busy = done - started
        return DrainResult(
            clicks=n,
            seconds=round(seconds, 3),
            clicks_per_s=round(n / seconds, 1),
            rows=rows,
            counted=counted,
            startup_s=round(first - started, 3),
            fill_s=round(fill_s, 1),
            redis_baseline_bytes=baseline,
            redis_filled_bytes=filled,
            redis_after_bytes=after,
            stream_entries_after=entries_after,
            stream_bytes_after=stream_bytes,
            duplicate_window_keys=windows,
            redis_after_windows_bytes=after_windows,
            cpu_cores={
                name: round((cpu_after[name] - cpu_before[name]) / busy, 2) for name in cpu_after
            },
            foreign_cores=round(foreign, 3),
            payload_bytes_per_click=round(payload_bytes / n, 1),
            postgres_bytes_per_row=round(row_bytes / max(rows, 1), 1),
        )
    finally:
        await redis.aclose()


async def oldest_unflushed_ms(redis: aioredis.Redis, keys: RedisKeys) -> int | None:
    """Time (ms) of the oldest click not yet acked, i.e. not yet in Postgres; None: none.

    The pending summary and the group's last-delivered id are read in one MULTI, so that
    an ack landing between two separate reads cannot make them disagree."""
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xpending(keys.clicks_stream, keys.consumer_group)
            pipe.xinfo_groups(keys.clicks_stream)
            summary, groups = await pipe.execute()
    except aioredis.ResponseError:  # no stream or no group yet
        return None
    if summary["pending"] and summary["min"] is not None:
        return _id(summary["min"])[0]
    group = next(
        (g for g in groups if _text(g["name"]) == keys.consumer_group),
        None,
    )
    if group is None:
        return None
    ms, seq = _id(group["last-delivered-id"])
    first = await redis.xrange(keys.clicks_stream, min=f"{ms}-{seq + 1}", count=1)
    return _id(first[0][0])[0] if first else None


async def oldest_unflushed_age_s(redis: aioredis.Redis, keys: RedisKeys) -> float:
    oldest = await oldest_unflushed_ms(redis, keys)
    return 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)


async def unflushed(redis_url: str, keys: RedisKeys) -> bool:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        return await oldest_unflushed_ms(redis, keys) is not None
    finally:
        await redis.aclose()


async def sample_while(
    redis_url: str,
    keys: RedisKeys,
    running: Callable[[], bool],
    rss_pid: int | None = None,
    rss_every_s: float = 10.0,
) -> tuple[list[float], list[tuple[float, int]]]:
    """Lag samples (seconds) every 100 ms, and (elapsed s, RSS KiB) of rss_pid every
    rss_every_s, while running() is true."""
    redis = aioredis.Redis.from_url(redis_url)
    lags: list[float] = []
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    next_rss = started + rss_every_s
    try:
        while running():
            lags.append(await oldest_unflushed_age_s(redis, keys))
            if rss_pid is not None and time.monotonic() >= next_rss:
                rss.append((round(time.monotonic() - started, 1), rss_kib(rss_pid)))
                next_rss += rss_every_s
            await asyncio.sleep(LAG_SAMPLE_S)
    finally:
        await redis.aclose()
    return lags, rss


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 < fraction <= 1)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.4999)))
    return ordered[rank - 1]
