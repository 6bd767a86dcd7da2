"""The traffic rollups agree with a recount from the raw rows: after concurrent flushers
and re-delivered clicks, and after ``backfill-rollups`` rebuilt them from scratch."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, tzinfo

import pytest
import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.record import Click, Flag, encode
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.flusher.loop import Flusher
from app.settings import Settings
from app.traffic import recount
from tests.support.reports import EPOCH, click, own_database, own_pool, quiet

TRACKING = [None, "", "a", "b", "ü"]


@pytest.fixture(scope="module")
async def database() -> AsyncIterator[str]:
    async with own_database() as url:
        yield url


@pytest.fixture
async def rollup_pool(database: str) -> AsyncIterator[Pool]:
    async with own_pool(database) as pool:
        yield pool


def random_clicks(n: int, today: date, seed: int) -> list[Click]:
    rng = random.Random(seed)
    made = []
    for _ in range(n):
        day = today - timedelta(days=rng.randrange(4))
        when = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            microseconds=rng.randrange(86_400 * 10**6)
        )
        publisher = rng.randrange(1, 4)
        made.append(
            click(
                when,
                publisher * 10 + rng.randrange(3),  # three links per publisher
                publisher,
                f"s{rng.randrange(40)}",  # sessions come back often
                af=rng.choice(TRACKING),
                cn=rng.choice(TRACKING[:3]),
                cv=rng.choice(TRACKING[:2]),
                flags=int(rng.choice(list(Flag))) if rng.random() < 0.2 else 0,
            )
        )
    return made


async def drain(redis: aioredis.Redis, keys: RedisKeys, *flushers: Flusher) -> None:
    """Run the flushers as in production (errors retried) until every entry is acked."""
    stop = asyncio.Event()
    running = [asyncio.create_task(f.run(stop)) for f in flushers]
    try:
        async with asyncio.timeout(30):
            while True:
                groups = await redis.xinfo_groups(keys.clicks_stream)
                if groups and groups[0]["lag"] == 0 and groups[0]["pending"] == 0:
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*running)


async def assert_rollups_match_raw_rows(
    pool: Pool, first: date, last: date, tz: tzinfo = UTC
) -> int:
    """``first`` to ``last``: days in ``tz``, the zone the flusher counted in."""
    async with pool.acquire() as conn:
        recounted = await recount.recount_tracking_days(conn, first, last, tz)
        assert await recount.rollup_tracking_days(conn, first, last) == recounted
        by_link: dict[tuple[int, date, int], list[int]] = defaultdict(lambda: [0, 0, 0])
        for (publisher, day, link, *_), counts in recounted.items():
            for n, count in enumerate(counts):
                by_link[publisher, day, link][n] += count
        rolled = await recount.rollup_link_days(conn, first, last)
        assert rolled == {key: tuple(v) for key, v in by_link.items()}
        by_dimension = await recount.recount_dimension_days(conn, first, last, tz)
        assert await recount.rollup_dimension_days(conn, first, last) == by_dimension
    return sum(c for c, _, _ in recounted.values())


def backfill(database_url: str, *args: str) -> str:
    env = {**os.environ, "CLICKTRACK_DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "backfill-rollups", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_rollups_equal_a_recount_and_survive_a_rebuild(
    settings: Settings, redis: aioredis.Redis, database: str, rollup_pool: Pool
) -> None:
    settings = quiet(settings, database).model_copy(update={"flush_batch_size": 150})
    today = datetime.now(UTC).date()
    clicks = random_clicks(3000, today, seed=1)
    # Every click once, then a third of them again: a re-delivery after a crash.
    payloads = [encode(c) for c in clicks] + [encode(c) for c in clicks[::3]]
    keys = RedisKeys(settings.key_prefix)
    await stream.add_many(redis, keys, payloads)
    flushers = [
        Flusher(
            settings,
            redis,
            rollup_pool,
            consumer=f"f{n}-{uuid.uuid4().hex[:4]}",
            backoff_s=(0.02, 0.2),
        )
        for n in range(3)
    ]
    await drain(redis, keys, *flushers)
    assert sum(f.stats.written for f in flushers) == len(clicks)
    # The rollups' days are those of the period time zone (UTC unless the environment says).
    tz = settings.period_tz

    def local_day(c: Click) -> date:
        return (EPOCH + timedelta(microseconds=c.ts_us)).astimezone(tz).date()

    days = {local_day(c) for c in clicks}
    first, last = min(days), max(days)

    counted = await assert_rollups_match_raw_rows(rollup_pool, first, last, tz)
    assert counted == len(clicks)
    unique = {
        (
            local_day(c),
            c.link_id,
            c.af,
            c.cn,
            c.cv,
            c.session_id,
        )
        for c in clicks
        if not c.flags
    }
    total_unique = await rollup_pool.fetchval("SELECT sum(unique_clicks) FROM traffic_link_days")
    assert total_unique == len(unique)

    # An operator restored the clicks but not the rollups: the backfill rebuilds them.
    before = await rollup_pool.fetch("SELECT * FROM traffic_tracking_days ORDER BY 1, 2, 3, 4")
    await rollup_pool.execute("TRUNCATE traffic_sessions, traffic_tracking_days")
    await rollup_pool.execute("UPDATE traffic_link_days SET clicks = clicks + 7")
    output = backfill(database)
    assert f"rebuilt the traffic rollups of {len(days)} days from {len(clicks)} clicks" in output
    assert await assert_rollups_match_raw_rows(rollup_pool, first, last, tz) == len(clicks)
    after = await rollup_pool.fetch("SELECT * FROM traffic_tracking_days ORDER BY 1, 2, 3, 4")
    assert {tuple(r) for r in after} == {tuple(r) for r in before}

    # A rebuild of one day leaves the others alone, and the flusher goes on adding to it.
    backfill(database, "--from", str(today), "--to", str(today))
    more = random_clicks(500, today, seed=2)
    await stream.add_many(redis, keys, [encode(c) for c in more])
    await drain(redis, keys, flushers[0])
    total = await assert_rollups_match_raw_rows(rollup_pool, first, last, tz)
    assert total == len(clicks) + len(more)


async def test_retention_keeps_the_rollups_of_dropped_days(
    database: str, rollup_pool: Pool
) -> None:
    day = date(2020, 2, 2)
    rows = await rollup_pool.fetchval(
        """INSERT INTO traffic_sessions (day, link_id, session_id, publisher_id)
           VALUES ($1, 1, 's', 1) RETURNING 1""",
        day,
    )
    assert rows == 1
    await rollup_pool.execute(
        """INSERT INTO traffic_link_days (publisher_id, day, link_id, clicks, unique_clicks,
               flagged) VALUES (1, $1, 1, 1, 1, 0)""",
        day,
    )
    await rollup_pool.execute("SELECT drop_click_partitions_before($1::date)", day + timedelta(1))
    assert (
        await rollup_pool.fetchval("SELECT count(*) FROM traffic_sessions WHERE day = $1", day) == 0
    )
    assert (
        await rollup_pool.fetchval("SELECT clicks FROM traffic_link_days WHERE day = $1", day) == 1
    )
    # The backfill skips days without raw clicks: their rollups are all that is left.
    backfill(database, "--from", str(day), "--to", str(day))
    assert (
        await rollup_pool.fetchval("SELECT clicks FROM traffic_link_days WHERE day = $1", day) == 1
    )
