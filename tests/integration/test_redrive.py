"""``python -m app.cli redrive``: dead letters and parked entries moved back into the click
stream, each exactly once, then stored once by a flusher. Real Redis, real Postgres, the CLI
as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys

import orjson
import pytest
import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.record import READERS, Click, encode
from app.clicks.stream import DeadLetter
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.flusher.loop import Flusher
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_flusher import count_rows, drain, entries, make_clicks, newer, stored

# A flusher that reads major 2 as well: what a release that introduced it would run.
BOTH_MAJORS = {1: READERS[1], 2: READERS[1]}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every field arrives as sent: no quality flags added (as in test_flusher.py)."""
    return settings.model_copy(
        update={"flag_bots": False, "duplicate_window_s": 0, "ip_clicks_per_minute": 0}
    )


@pytest.fixture
def keys(key_prefix: str) -> RedisKeys:
    return RedisKeys(key_prefix)


@pytest.fixture
def code(key_prefix: str) -> str:
    return key_prefix.rpartition(":")[2]


async def redrive(settings: Settings, *args: str, **env: str) -> tuple[int, str, str]:
    """Run the CLI; (exit status, stdout, stderr)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CLICKTRACK_")}
    environment |= {
        "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
        "CLICKTRACK_DATABASE_URL": settings.database_url,
        "CLICKTRACK_KEY_PREFIX": settings.key_prefix,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app.cli",
        "redrive",
        *args,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def dead_letter_as_an_old_flusher_did(
    redis: aioredis.Redis, keys: RedisKeys, clicks: list[Click]
) -> None:
    """What the flushers before record versions did to a record they did not know: a dead
    letter, acked (here: valid records, of a minor they would read today)."""
    await stream.ensure_group(redis, keys)
    ids = await stream.add_many(redis, keys, [newer(c) for c in clicks])
    assert len(await stream.read_new(redis, keys, "old", len(ids), 10)) == len(ids)
    letters = [
        DeadLetter(i, "not a click record of a known version", newer(c))
        for i, c in zip(ids, clicks, strict=True)
    ]
    await stream.ack(redis, keys, ids, letters)


async def test_dead_letters_and_parked_entries_come_back_once_and_are_stored_once(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 700)
    dead, parked = clicks[:300], clicks[300:]
    await dead_letter_as_an_old_flusher_did(redis, keys, dead)
    await stream.add_many(redis, keys, [newer(c, major=2) for c in parked])
    await drain(redis, keys, Flusher(settings, redis, pool, consumer="this-release"))
    assert await count_rows(pool, code) == 0
    assert await redis.xlen(keys.parked_stream) == 400

    status, out, err = await redrive(settings, "--from", "parked", "--dry-run")
    assert status == 0, err
    assert (
        out.splitlines()[-1]
        == "would move 400 parked entries back into the click stream (shard 0: 400)"
    )
    assert await redis.xlen(keys.parked_stream) == 400
    assert "would move; record version 2.1: this reader reads major 1" in out.splitlines()[0]

    length = await redis.xlen(keys.clicks_stream)
    for source, what, count in (("parked", "parked entries", 400), ("dead", "dead letters", 300)):
        status, out, err = await redrive(settings, "--from", source)
        assert status == 0, err
        *moved, summary = out.splitlines()
        assert len(moved) == count and all(" moved to " in line for line in moved)
        assert summary == f"moved {count} {what} back into the click stream (shard 0: {count})"
        again = await redrive(settings, "--from", source)  # nothing left to move
        assert again == (0, f"moved 0 {what} back into the click stream\n", "")
    assert await redis.xlen(keys.clicks_stream) == length + 700
    assert await redis.xlen(keys.parked_stream) == await redis.xlen(keys.dead_letter_stream) == 0

    newer_flusher = Flusher(settings, redis, pool, consumer="next-release", readers=BOTH_MAJORS)
    await drain(redis, keys, newer_flusher)
    assert await stored(pool, code) == {c.click_id: c for c in clicks}
    assert (newer_flusher.stats.written, newer_flusher.stats.duplicates) == (700, 0)


async def test_two_redrives_at_once_move_each_entry_once(
    settings: Settings, redis: aioredis.Redis, keys: RedisKeys, code: str
) -> None:
    clicks = make_clicks(code, 2000)
    await dead_letter_as_an_old_flusher_did(redis, keys, clicks)
    length = await redis.xlen(keys.clicks_stream)
    results = await asyncio.gather(redrive(settings), redrive(settings))
    assert [status for status, _, _ in results] == [0, 0]
    moved = [int(out.splitlines()[-1].split()[1]) for _, out, _ in results]
    assert sum(moved) == 2000
    assert await redis.xlen(keys.clicks_stream) == length + 2000
    payloads = [f[b"c"] for _, f in (await entries(redis, keys.clicks_stream))[length:]]
    assert sorted(orjson.loads(p)["id"] for p in payloads) == sorted(c.click_id for c in clicks)


async def test_limit_shard_and_entries_without_payload(
    settings: Settings, redis: aioredis.Redis, keys: RedisKeys, code: str
) -> None:
    shard1 = keys.for_shard(1)
    clicks = make_clicks(code, 5)
    await stream.ensure_group(redis, shard1)
    ids = await stream.add_many(redis, shard1, [encode(c) for c in clicks])
    await stream.ack(redis, shard1, ids[:1], [DeadLetter(b"1-1", "no field c", None)])
    await stream.ack(
        redis,
        shard1,
        ids,
        [DeadLetter(i, "x", encode(c)) for i, c in zip(ids, clicks, strict=True)],
    )
    shards = {"CLICKTRACK_STREAM_SHARDS": "2"}

    status, out, err = await redrive(settings, "--shard", "1", "--limit", "3", **shards)
    assert status == 0, err
    lines = out.splitlines()
    assert (
        lines[0] == "shard 1 " + lines[0].split()[2] + " (was 1-1): kept (no payload); no field c"
    )
    assert lines[-1] == "moved 3 dead letters back into the click stream (shard 1: 3)"
    assert await redis.xlen(shard1.dead_letter_stream) == 3  # 2 left, and the one kept
    status, out, _ = await redrive(settings, "--shard", "0", **shards)
    assert (status, out) == (0, "moved 0 dead letters back into the click stream\n")
    status, out, _ = await redrive(settings, **shards)
    assert out.splitlines()[-1] == "moved 2 dead letters back into the click stream (shard 1: 2)"
    assert await redis.xlen(shard1.dead_letter_stream) == 1


@pytest.mark.parametrize(
    ("args", "env", "status", "message"),
    [
        (["--shard", "1"], {}, 1, "error: --shard 1: the stream has 1 shard ("),
        (["--shard", "-1"], {}, 2, "must be 0 or more"),
        (["--limit", "0"], {}, 2, "must be 1 or more"),
        (["--from", "limbo"], {}, 2, "invalid choice: 'limbo'"),
        ([], {"CLICKTRACK_REDIS_URL": "redis://127.0.0.1:1/0"}, 1, "error: cannot use Redis"),
        ([], {"CLICKTRACK_STREAM_SHARDS": "0"}, 2, "CLICKTRACK_STREAM_SHARDS"),
    ],
)
async def test_bad_input_is_a_clear_error(
    settings: Settings, args: list[str], env: dict[str, str], status: int, message: str
) -> None:
    got, out, err = await redrive(settings, *args, **env)
    assert got == status and message in err, (got, out, err)
    assert len(err.strip().splitlines()) == 1 or got == 2
