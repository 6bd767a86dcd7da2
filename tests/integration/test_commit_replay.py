"""The group-commit writer while its spool is replayed: both talk to Redis at once.

Found by the fault suite (scenario 11, the network to Redis cut then healed): the replay and
the next batch shared one connection, their replies crossed, a batch's future was never
resolved and its redirects waited until the server was stopped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from app.clicks.spool import Spool
from app.core.keys import RedisKeys
from app.edge.commit import ClickWriter, NotRecorded
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


# --- Surprises: every request of a batch gets its answer, whatever goes wrong (issue 15) ---


class Surprise(RuntimeError):
    """An error nobody planned for: a bug, a library raising what it never documented."""


def raising(exc: BaseException) -> Callable[..., Awaitable[None]]:
    async def fail(*_args: object, **_kwargs: object) -> None:
        raise exc

    return fail


def raising_now(exc: BaseException) -> Callable[..., None]:
    def fail(*_args: object, **_kwargs: object) -> None:
        raise exc

    return fail


async def stream_payloads(redis: aioredis.Redis, keys: RedisKeys) -> list[bytes]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(  # type: ignore[assignment]
        keys.clicks_stream
    )
    return [fields[b"c"] for _, fields in entries]


async def test_an_unexpected_error_from_redis_spools_the_batch(
    tmp_path: Path, key_prefix: str, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a Redis, OS or timeout error: the batch goes to the spool all the same (the error
    may well be about Redis), every request of it is answered, and later batches work."""
    keys = RedisKeys(key_prefix)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    writer = ClickWriter(client, keys, Spool(tmp_path), timeout_s=2.0)
    first = [f"first-{n}".encode() for n in range(5)]
    later = [f"later-{n}".encode() for n in range(5)]
    try:
        async with asyncio.timeout(10):
            with monkeypatch.context() as patch:
                patch.setattr(writer, "_to_redis", raising(Surprise("bug in the sender")))
                await asyncio.gather(*(writer.record(payload) for payload in first))
                await asyncio.gather(*(writer.record(payload) for payload in later))
            assert not writer.redis_ok  # spooling until the replay finds Redis answering
            assert await writer.replay_spool() == len(first) + len(later)
            await writer.record(b"direct")
    finally:
        await writer.close()
        await client.aclose()
    assert sorted(await stream_payloads(redis, keys)) == sorted([*first, *later, b"direct"])


@pytest.mark.parametrize("error", [ValueError("bad"), OSError(28, "No space left on device")])
async def test_an_error_from_the_spool_refuses_the_batch(
    tmp_path: Path,
    key_prefix: str,
    redis: aioredis.Redis,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
) -> None:
    """Neither Redis nor the spool took the batch: each of its requests gets NotRecorded (the
    redirect's quick 503), and the next batch is written once the spool works again."""
    keys = RedisKeys(key_prefix)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    spool = Spool(tmp_path)
    writer = ClickWriter(client, keys, spool, timeout_s=2.0)
    try:
        async with asyncio.timeout(10):
            with monkeypatch.context() as patch:
                patch.setattr(writer, "_to_redis", raising(Surprise("sender")))
                patch.setattr(spool, "append", raising_now(error))
                results = await asyncio.gather(
                    *(writer.record(b"refused-%d" % n) for n in range(5)), return_exceptions=True
                )
            assert [type(result) for result in results] == [NotRecorded] * 5
            await writer.record(b"spooled")  # Redis still held failed: the spool takes it
            assert await writer.replay_spool() == 1
            await writer.record(b"direct")
    finally:
        await writer.close()
        await client.aclose()
    assert await stream_payloads(redis, keys) == [b"spooled", b"direct"]


async def test_a_cancelled_drainer_settles_its_batch_and_the_next(
    tmp_path: Path, key_prefix: str, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The task that writes batches is cancelled (a forced shutdown) while a batch waits on
    Redis and another fills: both go to the spool and every request is answered; the next
    record starts a new drainer."""
    keys = RedisKeys(key_prefix)
    client = aioredis.Redis.from_url(TEST_REDIS_URL)
    writer = ClickWriter(client, keys, Spool(tmp_path), timeout_s=30.0)
    never = asyncio.Event()

    async def hang(*_args: object, **_kwargs: object) -> None:
        await never.wait()

    try:
        async with asyncio.timeout(10):
            with monkeypatch.context() as patch:
                patch.setattr(writer, "_to_redis", hang)
                in_flight = [asyncio.create_task(writer.record(b"a%d" % n)) for n in range(3)]
                await asyncio.sleep(0.05)  # the drainer waits on Redis with the first batch
                filling = [asyncio.create_task(writer.record(b"b%d" % n)) for n in range(2)]
                await asyncio.sleep(0)
                drainer = writer._drainer
                assert drainer is not None
                drainer.cancel()
                results = await asyncio.gather(*in_flight, *filling, return_exceptions=True)
            assert results == [None] * 5
            assert await writer.replay_spool() == 5
            await writer.record(b"direct")
    finally:
        await writer.close()
        await client.aclose()
    assert sorted(await stream_payloads(redis, keys)) == sorted(
        [b"a0", b"a1", b"a2", b"b0", b"b1", b"direct"]
    )
