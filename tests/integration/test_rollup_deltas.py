"""The per-dimension and per-link rollups as deltas: appended with a batch's clicks, folded
into the rollups about a second later, never counted twice or lost: by concurrent writers and
folders, by a backfill that finds deltas pending, by a flusher that stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.record import Click, encode
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.flusher.dimensions import NO_VALUES
from app.flusher.loop import Flusher
from app.flusher.sink import ClickSink, Row, to_row
from app.settings import Settings
from tests.integration.test_rollups import (
    assert_rollups_match_raw_rows,
    backfill,
    drain,
    random_clicks,
)
from tests.support.reports import flush, own_database, own_pool, quiet


@pytest.fixture
async def database() -> AsyncIterator[str]:
    async with own_database() as url:
        yield url


@pytest.fixture
async def delta_pool(database: str) -> AsyncIterator[Pool]:
    async with own_pool(database) as pool:
        yield pool


def rows_of(clicks: list[Click]) -> list[Row]:
    return [to_row(c, NO_VALUES) for c in clicks]


async def linked_clicks(pool: Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(sum(clicks), 0) FROM traffic_link_days"))


async def pending(pool: Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM traffic_dimension_deltas"))


@pytest.fixture
async def sink(settings: Settings, delta_pool: Pool) -> ClickSink:
    """A sink counting in the period time zone, with the partitions of ``random_clicks``' days."""
    made = ClickSink(delta_pool, zone=settings.period_timezone)
    today = datetime.now(UTC).date()
    for back in range(5):
        await made.ensure_partition(today - timedelta(days=back))
    return made


async def test_a_batch_counts_as_deltas_until_folded_once(
    settings: Settings, delta_pool: Pool, sink: ClickSink
) -> None:
    today = datetime.now(UTC).date()
    clicks = random_clicks(400, today, seed=5)
    assert await sink.write(rows_of(clicks)) == 400
    # The tracking rollup is counted in the batch's own statement; links and dimensions wait.
    tracked = await delta_pool.fetchval("SELECT sum(clicks) FROM traffic_tracking_days")
    assert tracked == 400
    assert await linked_clicks(delta_pool) == 0
    assert await pending(delta_pool) > 0

    folded = await sink.fold()
    assert folded > 0
    assert await pending(delta_pool) == 0
    assert await linked_clicks(delta_pool) == 400
    assert await sink.fold() == 0  # nothing left: counted once
    # The same batch again (a re-delivery): no row, no delta, no count.
    assert await sink.write(rows_of(clicks)) == 0
    await sink.fold()
    assert await linked_clicks(delta_pool) == 400
    counted = await assert_rollups_match_raw_rows(
        delta_pool, today - timedelta(days=5), today + timedelta(days=1), settings.period_tz
    )
    assert counted == 400


async def test_concurrent_writers_and_folders_count_every_click_once(
    settings: Settings, delta_pool: Pool, sink: ClickSink
) -> None:
    today = datetime.now(UTC).date()
    batches = [rows_of(random_clicks(150, today, seed=100 + n)) for n in range(12)]
    stop = asyncio.Event()

    async def keep_folding() -> int:
        folded = 0
        while not stop.is_set():
            folded += await sink.fold()
            await asyncio.sleep(0)
        return folded

    folders = [asyncio.create_task(keep_folding()) for _ in range(2)]
    written = await asyncio.gather(*(sink.write(batch) for batch in batches))
    stop.set()
    await asyncio.gather(*folders)
    await sink.fold()
    assert sum(written) == 12 * 150
    assert await pending(delta_pool) == 0
    counted = await assert_rollups_match_raw_rows(
        delta_pool, today - timedelta(days=5), today + timedelta(days=1), settings.period_tz
    )
    assert counted == 12 * 150


async def test_a_backfill_folds_what_is_pending_before_it_rebuilds(
    settings: Settings, delta_pool: Pool, database: str, sink: ClickSink
) -> None:
    today = datetime.now(UTC).date()
    await sink.write(rows_of(random_clicks(300, today, seed=7)))
    assert await pending(delta_pool) > 0
    # Rebuild one day only, deltas of every day pending: the other days keep their counts.
    backfill(database, "--from", str(today), "--to", str(today))
    assert await pending(delta_pool) == 0
    counted = await assert_rollups_match_raw_rows(
        delta_pool, today - timedelta(days=5), today + timedelta(days=1), settings.period_tz
    )
    assert counted == 300
    assert await sink.fold() == 0
    assert await linked_clicks(delta_pool) == 300


async def test_the_flusher_folds_when_idle_and_when_it_stops(
    settings: Settings, redis: aioredis.Redis, database: str, delta_pool: Pool
) -> None:
    settings = quiet(settings, database)
    today = datetime.now(UTC).date()
    # Until the stream is empty (what the reports helper waits for): folded by then.
    written = await flush(settings, redis, delta_pool, random_clicks(250, today, seed=8))
    assert written == 250
    assert await pending(delta_pool) == 0
    assert await linked_clicks(delta_pool) == 250

    keys = RedisKeys(settings.key_prefix)
    await stream.add_many(redis, keys, [encode(c) for c in random_clicks(90, today, seed=9)])
    flusher = Flusher(settings, redis, delta_pool, consumer="stopping", backoff_s=(0.02, 0.2))
    await drain(redis, keys, flusher)  # stops it as soon as every entry is acked
    assert await pending(delta_pool) == 0
    assert await linked_clicks(delta_pool) == 340
