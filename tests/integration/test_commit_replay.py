"""The group-commit writer while its spool is replayed: both talk to Redis at once.

Found by the fault suite (scenario 11, the network to Redis cut then healed): the replay and
the next batch shared one connection, their replies crossed, a batch's future was never
resolved and its redirects waited until the server was stopped.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from app.clicks.spool import Spool
from app.core.keys import RedisKeys
from app.edge.commit import ClickWriter
from tests.conftest import TEST_REDIS_URL


async def test_batches_and_a_replay_at_the_same_time_all_arrive(
    tmp_path: Path, key_prefix: str, redis: aioredis.Redis
) -> None:
    keys = RedisKeys(key_prefix)
    spooled = [f"spooled-{n}".encode() for n in range(3000)]
    dead_worker = Spool(tmp_path)
    dead_worker.append([b"0 " + payload for payload in spooled])
    dead_worker.close()
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    writer = ClickWriter(client, keys, Spool(tmp_path), timeout_s=2.0)
    recorded = [uuid.uuid4().hex.encode() for _ in range(2000)]
    try:
        async with asyncio.timeout(20):
            replay = asyncio.create_task(writer.replay_spool())
            await asyncio.gather(*(writer.record(payload) for payload in recorded))
            assert await replay == len(spooled)
    finally:
        await writer.close()
        await client.aclose()
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        keys.clicks_stream
    )
    assert {fields[b"c"] for _, fields in entries} == {*spooled, *recorded}


async def test_a_cancelled_request_leaves_the_rest_of_its_batch_alone(
    tmp_path: Path, key_prefix: str, redis: aioredis.Redis
) -> None:
    """Every request of a batch awaits one shared future; cancelling one of them (a server
    that cancels on disconnect, a forced shutdown) cancels that future. The others must
    still be told when the batch is durable, and every click is written."""
    keys = RedisKeys(key_prefix)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    writer = ClickWriter(client, keys, Spool(tmp_path), timeout_s=2.0)
    payloads = [f"click-{n}".encode() for n in range(5)]
    try:
        async with asyncio.timeout(10):
            requests = [asyncio.create_task(writer.record(payload)) for payload in payloads]
            await asyncio.sleep(0)  # all five wait on the same batch now
            requests[2].cancel()
            results = await asyncio.gather(*requests, return_exceptions=True)
    finally:
        await writer.close()
        await client.aclose()
    assert [type(result).__name__ for result in results] == [
        "NoneType", "NoneType", "CancelledError", "NoneType", "NoneType",
    ]  # fmt: skip
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        keys.clicks_stream
    )
    assert sorted(fields[b"c"] for _, fields in entries) == payloads


async def test_a_batch_reaches_a_redis_that_forgot_the_script(
    tmp_path: Path, key_prefix: str, redis: aioredis.Redis
) -> None:
    """After a Redis restart its script cache is empty: EVALSHA fails with NOSCRIPT before
    anything runs, and the batch goes again with the script's text, once."""
    keys = RedisKeys(key_prefix)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    writer = ClickWriter(client, keys, Spool(tmp_path), timeout_s=2.0)
    try:
        await writer.record(b"before")
        await redis.script_flush()
        await writer.record(b"after")
    finally:
        await writer.close()
        await client.aclose()
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        keys.clicks_stream
    )
    assert [fields[b"c"] for _, fields in entries] == [b"before", b"after"]
    assert writer.redis_ok  # no detour through the spool
