from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis
import uuid_utils
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from app.clicks import stream
from app.clicks.record import READERS, Click, Flag, encode
from app.clicks.stream import Entry
from app.core.db import Pool, create_pool
from app.core.keys import RedisKeys
from app.core.metrics import FLUSHER_CONSUMERS_PRUNED, FLUSHER_DEAD_LETTERS, FLUSHER_PARKED
from app.core.migrate import migrate
from app.flusher.dimensions import DIMENSION_COLUMNS
from app.flusher.loop import Flusher
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL, create_database, drop_database

REPO = Path(__file__).resolve().parents[2]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAST_BACKOFF = (0.02, 0.2)
TRACKING_SAMPLES = [
    None,
    "",
    "blog-42",
    "café ☕",
    "日本語のキャンペーン",
    "emoji 🎉🚀",
    "quotes ' \" \\ , ; tab\there",
    "a" * 128,
    "é" * 128,
    "🎉" * 128,
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """These tests check that every field arrives as sent: no quality flags added here
    (tests/integration/test_quality.py covers them)."""
    return settings.model_copy(
        update={"flag_bots": False, "duplicate_window_s": 0, "ip_clicks_per_minute": 0}
    )


@pytest.fixture
def keys(key_prefix: str) -> RedisKeys:
    return RedisKeys(key_prefix)


@pytest.fixture
def code(key_prefix: str) -> str:
    """Every click of a test carries this code: the database is shared by the session."""
    return key_prefix.rpartition(":")[2]


def make_clicks(code: str, n: int, *, seed: int = 0, ts_us: int | None = None) -> list[Click]:
    rng = random.Random(seed)
    now_us = int(time.time() * 1_000_000)
    return [
        Click(
            click_id=str(uuid_utils.uuid7()),
            ts_us=ts_us if ts_us is not None else now_us - rng.randrange(36 * 3600 * 10**6),
            link_id=rng.randrange(1, 1000),
            code=code,
            publisher_id=rng.randrange(1, 50),
            af=rng.choice(TRACKING_SAMPLES),
            cn=rng.choice(TRACKING_SAMPLES),
            cv=rng.choice(TRACKING_SAMPLES),
            dp=rng.choice(TRACKING_SAMPLES),
            session_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            session_new=rng.random() < 0.5,
            ip=rng.choice([None, "203.0.113.7", "2001:db8::1", "203.0.113.0"]),
            user_agent=rng.choice([None, "Mozilla/5.0 (X11; Linux x86_64)", "curl/8.5"]),
            referer=rng.choice([None, "https://blog.example.org/post?id=1"]),
            accept_language=rng.choice([None, "en-US,en;q=0.9", "zh-CN"]),
            method=rng.choice(["GET", "HEAD"]),
            flags=rng.randrange(64),
        )
        for _ in range(n)
    ]


async def add(redis: aioredis.Redis, keys: RedisKeys, clicks: Sequence[Click]) -> list[bytes]:
    return await stream.add_many(redis, keys, (encode(click) for click in clicks))


async def stored(pool: Pool, code: str) -> dict[str, Click]:
    """The stored clicks of ``code`` as the clicks they were, by id. Their traffic
    dimensions are left out: tests/integration/test_click_dimensions.py checks them, and the
    ``country`` a record carries (``Click.country``) is not the stored column."""
    rows = await pool.fetch("SELECT * FROM clicks WHERE code = $1", code)
    result = {}
    for row in rows:
        values = {k: v for k, v in dict(row).items() if k not in DIMENSION_COLUMNS}
        values["click_id"] = str(values["click_id"])
        values["ts_us"] = (values.pop("ts") - EPOCH) // timedelta(microseconds=1)
        result[values["click_id"]] = Click(**values)
    assert len(result) == len(rows)
    return result


async def entries(redis: aioredis.Redis, key: str) -> list[Entry]:
    return cast(list[Entry], await redis.xrange(key))


async def count_rows(pool: Pool, code: str) -> int:
    count = await pool.fetchval("SELECT count(*) FROM clicks WHERE code = $1", code)
    assert isinstance(count, int)
    return count


async def backlog(redis: aioredis.Redis, keys: RedisKeys) -> tuple[int, int]:
    """(entries not delivered yet, entries delivered and not acked); (-1, -1) before any."""
    groups = await redis.xinfo_groups(keys.clicks_stream)
    if not groups:
        return -1, -1
    (group,) = groups
    return int(group["lag"]), int(group["pending"])


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(*flushers: Flusher) -> AsyncIterator[list[asyncio.Task[None]]]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(flusher.run(stop)) for flusher in flushers]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 10)


async def drain(redis: aioredis.Redis, keys: RedisKeys, *flushers: Flusher) -> None:
    async def empty() -> bool:
        return await backlog(redis, keys) == (0, 0)

    async with running(*flushers):
        await eventually(empty)


async def test_stores_every_click_once_with_every_field(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 10_000)
    await add(redis, keys, clicks)
    flusher = Flusher(settings, redis, pool, consumer="solo")
    await drain(redis, keys, flusher)
    assert await stored(pool, code) == {click.click_id: click for click in clicks}
    assert (flusher.stats.written, flusher.stats.duplicates) == (10_000, 0)


async def test_two_flushers_together_store_every_click_once(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 10_000, seed=1)
    await add(redis, keys, clicks)
    small = settings.model_copy(update={"flush_batch_size": 250})
    first, second = (Flusher(small, redis, pool, consumer=name) for name in ("one", "two"))
    await drain(redis, keys, first, second)
    assert await stored(pool, code) == {click.click_id: click for click in clicks}
    assert first.stats.written + second.stats.written == 10_000
    assert first.stats.written > 0 and second.stats.written > 0


async def test_a_click_added_twice_is_stored_once(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 300)
    await add(redis, keys, clicks)
    await add(redis, keys, clicks[:200])
    flusher = Flusher(settings, redis, pool, consumer="solo")
    await drain(redis, keys, flusher)
    await add(redis, keys, clicks[100:])
    await drain(redis, keys, flusher)
    assert await stored(pool, code) == {click.click_id: click for click in clicks}
    assert (flusher.stats.written, flusher.stats.duplicates) == (300, 400)


async def test_own_pending_entries_come_first(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 150)
    await stream.ensure_group(redis, keys)
    await add(redis, keys, clicks[:100])
    crashed = await stream.read_new(redis, keys, "worker-1", 100, 10)  # read, never acked
    assert len(crashed) == 100
    await add(redis, keys, clicks[100:])

    flusher = Flusher(settings, redis, pool, consumer="worker-1")  # the same name restarts
    assert await flusher.run_once(read_ahead=False) == 100
    assert set(await stored(pool, code)) == {click.click_id for click in clicks[:100]}
    assert await backlog(redis, keys) == (50, 0)
    await drain(redis, keys, flusher)
    assert await count_rows(pool, code) == 150


async def test_the_batch_read_ahead_is_stored_next_or_by_whoever_restarts(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 250)
    await add(redis, keys, clicks)
    small = settings.model_copy(update={"flush_batch_size": 100})

    flusher = Flusher(small, redis, pool, consumer="worker-1", writers=1)
    assert await flusher.run_once() == 100  # stored; the next 100 read while it was written
    assert await backlog(redis, keys) == (50, 100)
    assert await count_rows(pool, code) == 100
    # The process dies holding the read-ahead batch: its successor (same name) reads its
    # own pending entries first, in order, then the rest.
    successor = Flusher(small, redis, pool, consumer="worker-1", writers=1)
    assert await successor.run_once() == 100
    assert await successor.run_once() == 50
    assert await backlog(redis, keys) == (0, 0)
    assert sorted(await stored(pool, code)) == sorted(click.click_id for click in clicks)


async def test_two_writers_store_every_batch_once_and_in_order_of_classification(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    # One session clicking one link every 100 ms: every click after the first is a
    # duplicate, which only comes out right if batches are classified in stream order.
    clicks = make_clicks(code, 450)
    for n, click in enumerate(clicks):
        click.link_id, click.session_id, click.flags = 1, "one-session", 0
        click.ts_us = clicks[0].ts_us + n * 100_000
    await add(redis, keys, clicks)
    small = settings.model_copy(update={"flush_batch_size": 100, "duplicate_window_s": 30})

    flusher = Flusher(small, redis, pool, consumer="worker-1", writers=2)
    assert await flusher.run_once() == 100  # being written; the next 100 read meanwhile
    assert await flusher.run_once() == 100  # returns once the first batch is stored
    assert await count_rows(pool, code) >= 100
    # The process dies with a batch being written and one read ahead: its successor
    # stores all of them once, and the rest.
    await flusher._finish_storing()
    successor = Flusher(small, redis, pool, consumer="worker-1", writers=2)
    while await successor.run_once():
        pass
    assert await backlog(redis, keys) == (0, 0)
    rows = await stored(pool, code)
    assert sorted(rows) == sorted(click.click_id for click in clicks)
    duplicates = {click_id for click_id, row in rows.items() if row.flags & Flag.duplicate}
    assert duplicates == {click.click_id for click in clicks[1:]}


async def test_entries_of_a_dead_consumer_are_claimed_after_the_idle_time(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 120)
    await stream.ensure_group(redis, keys)
    await add(redis, keys, clicks)
    assert len(await stream.read_new(redis, keys, "dead", 1000, 10)) == 120

    quick = settings.model_copy(update={"claim_idle_ms": 300})
    flusher = Flusher(quick, redis, pool, consumer="alive")
    assert await flusher.run_once() == 0  # too fresh to be claimed
    assert await backlog(redis, keys) == (0, 120)
    started = time.monotonic()
    await drain(redis, keys, flusher)
    assert time.monotonic() - started >= 0.2
    assert await stored(pool, code) == {click.click_id: click for click in clicks}
    assert (flusher.stats.claimed, flusher.stats.written) == (120, 120)


async def test_malformed_entries_go_to_the_dead_letters_and_the_rest_is_stored(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    good = make_clicks(code, 40)
    body = orjson.loads(encode(good[0]))
    malformed = {
        b"not json": b"{not json",
        b"impossible version": orjson.dumps(body | {"v": 0}),
        b"bad minor": orjson.dumps(body | {"mv": "x"}),
        b"missing field": orjson.dumps({k: v for k, v in body.items() if k != "s"}),
        b"bad uuid": orjson.dumps(body | {"id": "not-a-uuid"}),
        b"NUL": orjson.dumps(body | {"af": "a\x00b"}),
        b"out of range": orjson.dumps(body | {"f": 2**40}),
    }
    await stream.ensure_group(redis, keys)
    await add(redis, keys, good[:20])
    bad_ids: dict[bytes, bytes] = {}
    for raw in malformed.values():
        bad_ids[cast(bytes, await redis.xadd(keys.clicks_stream, {b"c": raw}))] = raw
    no_c = cast(bytes, await redis.xadd(keys.clicks_stream, {b"x": b"y"}))
    await add(redis, keys, good[20:])

    await drain(redis, keys, Flusher(settings, redis, pool, consumer="solo"))
    assert await stored(pool, code) == {click.click_id: click for click in good}
    letters = {fields[b"id"]: fields for _, fields in await entries(redis, keys.dead_letter_stream)}
    assert set(letters) == {*bad_ids, no_c}
    for entry_id, raw in bad_ids.items():
        assert letters[entry_id][b"c"] == raw
        assert letters[entry_id][b"reason"]
    assert letters[no_c][b"reason"] == b"no field c"
    assert await stream.pending_count(redis, keys) == 0


def newer(click: Click, major: int = 1, minor: int = 1) -> bytes:
    """The click as a writer of a later version would write it: an extra field or two."""
    body = orjson.loads(encode(click)) | {"v": major, "mv": minor, "geo": {"cc": "FR"}}
    return orjson.dumps(body)


async def test_unknown_majors_are_parked_corrupt_entries_dead_lettered_newer_minors_read(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 90)
    plain, minor, major = clicks[:30], clicks[30:60], clicks[60:]
    parked_before, dead_before = FLUSHER_PARKED._value.get(), FLUSHER_DEAD_LETTERS._value.get()
    await stream.ensure_group(redis, keys)
    # Interleaved, so that each batch holds every kind.
    payloads: list[bytes] = []
    for a, b, c in zip(plain, minor, major, strict=True):
        payloads += [encode(a), newer(b), newer(c, major=2, minor=0)]
    payloads += [b"{broken", orjson.dumps({"v": 2.0})]
    ids = await stream.add_many(redis, keys, payloads)
    major_ids = dict(zip(ids[2:90:3], major, strict=True))

    flusher = Flusher(settings.model_copy(update={"flush_batch_size": 20}), redis, pool)
    await drain(redis, keys, flusher)
    assert await stored(pool, code) == {c.click_id: c for c in plain + minor}
    parked = {fields[b"id"]: fields for _, fields in await entries(redis, keys.parked_stream)}
    assert set(parked) == set(major_ids)
    for entry_id, fields in parked.items():
        assert orjson.loads(fields[b"c"])["id"] == major_ids[entry_id].click_id
        assert fields[b"reason"] == b"record version 2.0: this reader reads major 1"
    dead = {fields[b"id"] for _, fields in await entries(redis, keys.dead_letter_stream)}
    assert dead == set(ids[90:])  # the float version is corrupt, not a newer major
    assert (flusher.stats.parked, flusher.stats.dead_lettered) == (30, 2)
    assert FLUSHER_PARKED._value.get() - parked_before == 30
    assert FLUSHER_DEAD_LETTERS._value.get() - dead_before == 2
    assert await stream.pending_count(redis, keys) == 0


async def test_a_flusher_given_the_newer_major_stores_what_another_parked(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 40)
    await stream.add_many(redis, keys, [newer(c, major=2) for c in clicks])
    await drain(redis, keys, Flusher(settings, redis, pool, consumer="old"))
    assert await count_rows(pool, code) == 0
    assert await redis.xlen(keys.parked_stream) == 40

    await stream.add_many(redis, keys, [newer(c, major=2) for c in clicks[:10]])
    both = {1: READERS[1], 2: READERS[1]}  # major 2 as a newer flusher would read it
    await drain(redis, keys, Flusher(settings, redis, pool, consumer="new", readers=both))
    assert await stored(pool, code) == {c.click_id: c for c in clicks[:10]}


async def test_an_entry_set_aside_leaves_the_stream_only_with_its_ack(
    settings: Settings,
    redis: aioredis.Redis,
    pool: Pool,
    keys: RedisKeys,
    code: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parking and acking are one MULTI: when it fails, the entry is still pending and not
    parked; the retry parks it once."""
    (click,) = make_clicks(code, 1)
    await stream.ensure_group(redis, keys)
    (entry_id,) = await stream.add_many(redis, keys, [newer(click, major=3)])
    real_execute = Pipeline.execute
    failed: list[bool] = []

    async def fail_first_transaction(self: Pipeline, raise_on_error: bool = True) -> list[Any]:
        if self.is_transaction and not failed:
            failed.append(True)
            raise RedisConnectionError("Redis went away before EXEC")
        return await real_execute(self, raise_on_error)

    monkeypatch.setattr(Pipeline, "execute", fail_first_transaction)
    flusher = Flusher(settings, redis, pool, consumer="solo")
    with pytest.raises(RedisConnectionError):
        await flusher.run_once(read_ahead=False)
    assert failed and await redis.xlen(keys.parked_stream) == 0
    assert await backlog(redis, keys) == (0, 1)
    await drain(redis, keys, Flusher(settings, redis, pool, consumer="solo"))
    assert [f[b"id"] for _, f in await entries(redis, keys.parked_stream)] == [entry_id]


async def test_stale_consumers_without_pending_entries_are_pruned(
    redis: aioredis.Redis, keys: RedisKeys, code: str
) -> None:
    await stream.ensure_group(redis, keys)
    await add(redis, keys, make_clicks(code, 3))
    for name in ("gone", "holder", "me"):
        await redis.xgroup_createconsumer(keys.clicks_stream, keys.consumer_group, name)
    assert len(await stream.read_new(redis, keys, "holder", 1, 10)) == 1
    await asyncio.sleep(0.3)
    await redis.xgroup_createconsumer(keys.clicks_stream, keys.consumer_group, "fresh")

    pruned = await stream.prune_consumers(redis, keys, ["me"], min_idle_ms=200)
    assert [name for name, _ in pruned] == ["gone"] and pruned[0][1] > 200
    consumers = await redis.xinfo_consumers(keys.clicks_stream, keys.consumer_group)
    assert {c["name"] for c in consumers} == {b"holder", b"me", b"fresh"}
    assert await stream.pending_count(redis, keys) == 1  # holder's entry is still pending
    assert await stream.prune_consumers(redis, keys, ["me"], min_idle_ms=200) == []
    missing = RedisKeys(f"{keys.prefix}:none")
    assert await stream.prune_consumers(redis, missing, [], min_idle_ms=0) == []


async def test_a_flusher_prunes_a_dead_consumer_once_its_entries_are_claimed(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 50)
    await stream.ensure_group(redis, keys)
    await add(redis, keys, clicks)
    assert len(await stream.read_new(redis, keys, "dead-pod", 20, 10)) == 20
    quick = settings.model_copy(update={"claim_idle_ms": 300, "consumer_prune_idle_s": 0.5})
    pruned_before = FLUSHER_CONSUMERS_PRUNED._value.get()
    flusher = Flusher(quick, redis, pool, consumer="live-pod")

    async def dead_pod_gone() -> bool:
        consumers = await redis.xinfo_consumers(keys.clicks_stream, keys.consumer_group)
        return {c["name"] for c in consumers} == {b"live-pod"}

    async with running(flusher):
        await eventually(dead_pod_gone)
    assert await stored(pool, code) == {c.click_id: c for c in clicks}
    assert (flusher.stats.claimed, flusher.stats.pruned) == (20, 1)
    assert FLUSHER_CONSUMERS_PRUNED._value.get() - pruned_before == 1


async def test_the_stream_is_trimmed_after_a_drain(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    await add(redis, keys, make_clicks(code, 3000))
    flusher = Flusher(settings, redis, pool, consumer="solo")

    async def trimmed() -> bool:
        return await redis.xlen(keys.clicks_stream) == 0

    async with running(flusher):
        await eventually(trimmed, within=10)
    assert await count_rows(pool, code) == 3000


async def test_trim_keeps_pending_and_unread_entries(
    redis: aioredis.Redis, keys: RedisKeys, code: str
) -> None:
    ids = await add(redis, keys, make_clicks(code, 10))
    assert await stream.trim_acknowledged(redis, keys) == 0  # no group: nobody read anything
    await stream.ensure_group(redis, keys)
    assert len(await stream.read_new(redis, keys, "x", 6, 10)) == 6
    await stream.ack(redis, keys, [ids[0], ids[1], ids[3]])
    assert await stream.trim_acknowledged(redis, keys) == 2  # ids[2] is still pending
    assert [entry_id for entry_id, _ in await entries(redis, keys.clicks_stream)] == ids[2:]

    await stream.ack(redis, keys, [ids[2], ids[4], ids[5]])
    assert await stream.trim_acknowledged(redis, keys) == 4  # ids[6:] were never delivered
    assert await redis.xlen(keys.clicks_stream) == 4

    await redis.xgroup_create(keys.clicks_stream, "audit", id="0")  # a second reader
    read = await stream.read_new(redis, keys, "x", 10, 10)
    await stream.ack(redis, keys, [entry_id for entry_id, _ in read])
    assert await stream.trim_acknowledged(redis, keys) == 0  # "audit" has read nothing
    await redis.xgroup_destroy(keys.clicks_stream, "audit")
    assert await stream.trim_acknowledged(redis, keys) == 4
    assert await redis.xlen(keys.clicks_stream) == 0


async def test_a_click_without_partition_lands_in_the_default_one_then_moves(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    day = datetime.now(UTC).date() - timedelta(days=400)
    ts_us = (datetime(day.year, day.month, day.day, 13, tzinfo=UTC) - EPOCH) // timedelta(
        microseconds=1
    )
    (old,) = make_clicks(code, 1, ts_us=ts_us)
    recent = make_clicks(code, 5)
    await add(redis, keys, [old, *recent])
    await drain(redis, keys, Flusher(settings, redis, pool, consumer="solo"))

    async def partition_of(click_id: str) -> str:
        sql = "SELECT tableoid::regclass::text FROM clicks WHERE click_id = $1"
        name = await pool.fetchval(sql, uuid.UUID(click_id))
        assert isinstance(name, str)
        return name

    assert await partition_of(old.click_id) == "clicks_default"
    for click in recent:  # within the window: their partitions were created
        day_of = (EPOCH + timedelta(microseconds=click.ts_us)).date()
        assert await partition_of(click.click_id) == f"clicks_{day_of:%Y%m%d}"

    await pool.execute("SELECT ensure_click_partition($1::date)", day)
    assert await partition_of(old.click_id) == f"clicks_{day:%Y%m%d}"
    assert await stored(pool, code) == {click.click_id: click for click in [old, *recent]}


async def test_nothing_is_acked_while_postgres_fails_and_all_is_stored_after(
    settings: Settings, redis: aioredis.Redis, keys: RedisKeys, code: str
) -> None:
    name = f"clicktrack_test_down_{uuid.uuid4().hex[:8]}"
    clicks = make_clicks(code, 500)
    await add(redis, keys, clicks)
    url = settings.database_url.rpartition("/")[0] + f"/{name}"
    pool = await create_pool(url, min_size=0, max_size=2)  # the database does not exist yet
    try:
        flusher = Flusher(settings, redis, pool, consumer="solo", backoff_s=FAST_BACKOFF)
        async with running(flusher) as (task,):
            await asyncio.sleep(0.7)
            assert await backlog(redis, keys) == (500, 0)  # unreachable: nothing taken
            await create_database(name)  # reachable, but every write fails: no clicks table
            await asyncio.sleep(0.7)
            assert await backlog(redis, keys) == (0, 500)  # read, held, not acked
            assert not task.done()
            conn = await asyncpg.connect(url)
            try:
                await migrate(conn)
            finally:
                await conn.close()

            async def empty() -> bool:
                return await backlog(redis, keys) == (0, 0)

            await eventually(empty)
        assert await stored(pool, code) == {click.click_id: click for click in clicks}
        assert flusher.stats.written == 500
    finally:
        await pool.close()
        await drop_database(name)


async def test_the_loop_survives_redis_being_unreachable(
    settings: Settings, pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    flusher = Flusher(settings, nowhere, pool, consumer="solo", backoff_s=FAST_BACKOFF)
    try:
        async with running(flusher) as (task,):
            await asyncio.sleep(0.5)
            assert not task.done()
    finally:
        await nowhere.aclose()
    retries = [r for r in caplog.records if r.getMessage() == "flusher_retry"]
    assert len(retries) >= 3
    assert [getattr(r, "attempt", None) for r in retries[:3]] == [1, 2, 3]


def flusher_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    env |= {
        "CLICKTRACK_DATABASE_URL": settings.database_url,
        "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
        "CLICKTRACK_KEY_PREFIX": settings.key_prefix,
        "CLICKTRACK_FLUSH_BATCH_SIZE": "200",
        "CLICKTRACK_FLUSH_BLOCK_MS": "50",
        "CLICKTRACK_FLUSHER_METRICS_PORT": "0",
    }
    return env | extra


async def test_sigterm_finishes_the_batch_in_hand_and_exits_0(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    sent: dict[bytes, Click] = {}
    feeding = asyncio.Event()
    feeding.set()

    async def feed() -> None:
        seed = 0
        while feeding.is_set():
            clicks = make_clicks(code, 200, seed=seed)
            sent.update(zip(await add(redis, keys, clicks), clicks, strict=True))
            seed += 1
            await asyncio.sleep(0.01)

    await stream.ensure_group(redis, keys)
    feeder = asyncio.create_task(feed())
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.flusher",
        cwd=REPO,
        env=flusher_env(settings),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def busy() -> bool:
            return await count_rows(pool, code) >= 2000

        await eventually(busy)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 10)
    finally:
        feeding.clear()
        await feeder
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    events = [orjson.loads(line)["msg"] for line in err.splitlines()]
    assert events[0] == "flusher_started" and events[-1] == "flusher_stopped"

    (group,) = await redis.xinfo_groups(keys.clicks_stream)
    assert group["pending"] == 0
    last = stream_id(group["last-delivered-id"])
    read = {c.click_id for entry_id, c in sent.items() if stream_id(entry_id) <= last}
    assert set(await stored(pool, code)) == read
    assert 2000 <= len(read) <= len(sent)


def stream_id(raw: bytes) -> tuple[int, int]:
    ms, _, seq = raw.partition(b"-")
    return int(ms), int(seq)


async def test_bad_configuration_exits_non_zero_with_a_clear_message(settings: Settings) -> None:
    env = flusher_env(settings, CLICKTRACK_FLUSH_BATCH_SIZE="0")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.flusher",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    (line,) = err.splitlines()
    message = orjson.loads(line)
    assert message["msg"] == "invalid_configuration"
    assert "CLICKTRACK_FLUSH_BATCH_SIZE" in message["error"]
