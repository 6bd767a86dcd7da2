"""Replica acknowledgement: a batch is answered once the primary and N replicas have it, or
once it is in the spool. On a real primary and replica (tests/support/replicas.py), started
here on free loopback ports and stopped by PID.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from pydantic import ValidationError

from app.clicks.spool import Spool
from app.core import resp
from app.core.keys import RedisKeys
from app.edge import commit
from app.edge.commit import ClickWriter
from app.settings import Settings
from tests.support.replicas import ReplicatedRedis

REPLICA_TIMEOUT_S = 0.1


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicatedRedis]:
    pair = ReplicatedRedis(tmp_path_factory.mktemp("replicas"))
    try:
        yield pair
    finally:
        pair.stop()


@pytest.fixture
async def primary(nodes: ReplicatedRedis) -> AsyncIterator[aioredis.Redis]:
    nodes.replica.resume()  # whatever a failed test left paused
    nodes.wait_in_sync()
    client = aioredis.Redis.from_url(nodes.primary.url)
    try:
        yield client
    finally:
        nodes.replica.resume()
        await client.aclose()


def _writer(client: aioredis.Redis, keys: RedisKeys, spool: Spool, replicas: int) -> ClickWriter:
    return ClickWriter(
        client,
        keys,
        spool,
        timeout_s=1.0,
        min_replicas=replicas,
        replica_timeout_s=REPLICA_TIMEOUT_S,
    )


def _shortfalls() -> float:
    return REGISTRY.get_sample_value("clicktrack_commit_replica_shortfalls_total") or 0.0


async def _payloads_in(client: aioredis.Redis, keys: RedisKeys) -> list[bytes]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(  # type: ignore[assignment]
        keys.clicks_stream
    )
    return [fields[b"c"] for _, fields in entries]


def _clicks(n: int, tag: str) -> list[bytes]:
    return [f"{tag}-{k}-{uuid.uuid4().hex[:6]}".encode() for k in range(n)]


async def test_wait_counts_the_replica_on_the_same_connection(
    nodes: ReplicatedRedis, primary: aioredis.Redis
) -> None:
    key = f"ctreplica:{uuid.uuid4().hex[:8]}".encode()
    sender = resp.PackedSender(primary)
    try:
        replies = await sender.send(
            [resp.command((b"XADD", key, b"*", b"c", b"x")), resp.wait_command(1, 1000)]
        )
    finally:
        await sender.close()
    assert replies[-1] >= 1
    acked = resp.ReplicatedSender(primary, 1, 1000)
    try:
        assert await acked.send([resp.command((b"XLEN", key))]) == [1]  # WAIT's reply taken
    finally:
        await acked.close()
    await primary.delete(key)


async def test_with_one_replica_clicks_are_answered_once_the_replica_has_them(
    tmp_path: Path, nodes: ReplicatedRedis, primary: aioredis.Redis
) -> None:
    keys = RedisKeys(f"ctreplica{uuid.uuid4().hex[:8]}")
    writer = _writer(primary, keys, Spool(tmp_path), replicas=1)
    payloads = _clicks(300, "acked")
    before = _shortfalls()
    try:
        async with asyncio.timeout(10):
            await asyncio.gather(*(writer.record(payload) for payload in payloads))
    finally:
        await writer.close()
    assert isinstance(writer._sender, resp.ReplicatedSender)
    assert _shortfalls() == before and writer.redis_ok
    assert not Spool(tmp_path).has_data()
    assert sorted(await _payloads_in(primary, keys)) == sorted(payloads)
    # WAIT returned: the replica had every click when the requests were answered.
    replica = aioredis.Redis.from_url(nodes.replica.url)
    try:
        assert sorted(await _payloads_in(replica, keys)) == sorted(payloads)
    finally:
        await replica.aclose()
    await primary.delete(keys.clicks_stream)


async def test_a_stopped_replica_sends_batches_to_the_spool_until_it_is_back(
    tmp_path: Path, nodes: ReplicatedRedis, primary: aioredis.Redis
) -> None:
    keys = RedisKeys(f"ctreplica{uuid.uuid4().hex[:8]}")
    writer = _writer(primary, keys, Spool(tmp_path), replicas=1)
    first, then = _clicks(50, "first"), _clicks(50, "then")
    before = _shortfalls()
    try:
        nodes.replica.pause()
        async with asyncio.timeout(10):
            started = time.monotonic()
            await asyncio.gather(*(writer.record(payload) for payload in first))
            # Every click answered (from the spool), the replicas' timeout paid once.
            assert time.monotonic() - started < 1.0 + REPLICA_TIMEOUT_S
            assert _shortfalls() == before + 1
            assert not writer.redis_ok and Spool(tmp_path).has_data()
            started = time.monotonic()
            await asyncio.gather(*(writer.record(payload) for payload in then))
            assert time.monotonic() - started < REPLICA_TIMEOUT_S  # spooled at once
            # The replay WAITs too: nothing leaves the spool while the replica is away.
            with pytest.raises(resp.ReplicaShortfall):
                await writer.replay_spool()
            assert not writer.redis_ok and Spool(tmp_path).has_data()
            writer.start()
            nodes.replica.resume()
            deadline = time.monotonic() + 5
            while not writer.redis_ok or Spool(tmp_path).has_data():
                assert time.monotonic() < deadline, "the spool was not replayed"
                await asyncio.sleep(0.05)
            back = _clicks(10, "back")
            await asyncio.gather(*(writer.record(payload) for payload in back))
    finally:
        nodes.replica.resume()
        await writer.close()
    assert _shortfalls() == before + 1
    found = await _payloads_in(primary, keys)
    # Each click at least once (a batch not confirmed was on the primary already, and
    # replayed: the flusher stores it once); the clicks after the replay exactly once.
    assert set(found) == {*first, *then, *back}
    assert sorted(p for p in found if p.startswith(b"back")) == sorted(back)
    await primary.delete(keys.clicks_stream)


async def test_without_replica_acknowledgement_nothing_waits_for_the_replica(
    tmp_path: Path, nodes: ReplicatedRedis, primary: aioredis.Redis
) -> None:
    keys = RedisKeys(f"ctreplica{uuid.uuid4().hex[:8]}")
    writer = _writer(primary, keys, Spool(tmp_path), replicas=0)
    payloads = _clicks(100, "plain")
    before = _shortfalls()
    try:
        nodes.replica.pause()
        async with asyncio.timeout(10):
            await asyncio.gather(*(writer.record(payload) for payload in payloads))
            assert await writer.replay_spool() == 0
    finally:
        nodes.replica.resume()
        await writer.close()
    assert type(writer._sender) is resp.PackedSender  # no WAIT, nothing else per batch
    assert writer._timeout_s == 1.0
    assert _shortfalls() == before and writer.redis_ok
    assert not Spool(tmp_path).has_data()
    assert sorted(await _payloads_in(primary, keys)) == sorted(payloads)
    await primary.delete(keys.clicks_stream)


def test_the_shortfall_log_is_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    commit._shortfall_logged_at = float("-inf")
    before = _shortfalls()
    with caplog.at_level("WARNING", logger=commit.__name__):
        for _ in range(5):
            commit._log_shortfall(resp.ReplicaShortfall(0, 1))
    assert _shortfalls() == before + 5
    assert len([r for r in caplog.records if "replicas did not confirm" in r.message]) == 1


@pytest.mark.parametrize(
    "field, value",
    [
        ("redis_min_replicas", -1),
        ("redis_replica_timeout_ms", 0),
        ("redis_replica_timeout_ms", 9999),
    ],
)
def test_settings_bounds(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_settings_defaults() -> None:
    settings = Settings()
    assert (settings.redis_min_replicas, settings.redis_replica_timeout_ms) == (0, 100)
