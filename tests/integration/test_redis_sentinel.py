"""``redis+sentinel://`` on a live Sentinel: one primary, one replica (``--replicaof``) and
one Sentinel, ``redis-server`` processes of the test's own on free loopback ports, in a temp
folder (tests/support/replicas.py), each stopped by its PID. The web app, in-process, records
clicks on the primary the Sentinel names; the primary is killed (SIGKILL), the Sentinel
promotes the replica, and the same app (same clients) records clicks on the new primary:
those answered during the failover from the spool, replayed there once it answers.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from app.clicks import record
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.settings import Settings
from tests.cluster.test_pipeline_cluster import browser, follow, web
from tests.integration.test_click_caps import new_links
from tests.support.replicas import RedisProcess, ReplicatedRedis

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="no redis-server on this machine: no local primary, replica and Sentinel",
)

PRIMARY_NAME = "ctprimary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
PROMOTION_WITHIN_S = 15.0  # the kill to the Sentinel naming the replica
RECOVERY_WITHIN_S = 10.0  # the promotion to a new click in the new primary's stream


@dataclass
class SentinelSet:
    nodes: ReplicatedRedis
    sentinel: RedisProcess

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{PRIMARY_NAME}"

    def stop(self) -> None:
        self.sentinel.stop()
        self.nodes.stop()


def start_sentinel(folder: Path, primary_port: int) -> RedisProcess:
    """A Sentinel (``redis-server <conf> --sentinel``) monitoring the primary, quorum 1."""
    conf_folder = folder / "sentinel"
    conf_folder.mkdir(parents=True, exist_ok=True)
    conf = conf_folder / "sentinel.conf"  # the Sentinel rewrites it: a file of its own
    conf.write_text(
        f"sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 1\n"
        f"sentinel down-after-milliseconds {PRIMARY_NAME} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {PRIMARY_NAME} {FAILOVER_TIMEOUT_MS}\n"
    )
    return RedisProcess("sentinel", folder, [str(conf), "--sentinel"])


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    nodes = ReplicatedRedis(tmp_path / "redis")
    try:
        sentinel = start_sentinel(tmp_path / "redis", nodes.primary.port)
    except BaseException:
        nodes.stop()
        raise
    started = SentinelSet(nodes, sentinel)
    try:
        yield started
    finally:
        started.stop()


async def primary_port(sentinel: aioredis.Redis) -> int | None:
    """The port of the primary the Sentinel names now."""
    address = await sentinel.sentinel_get_master_addr_by_name(PRIMARY_NAME, return_responses=True)
    return address[1] if isinstance(address, tuple) else None


async def wait_replica_known(sentinel: aioredis.Redis, replica_port: int) -> None:
    """Until the Sentinel has found the replica (from the primary's INFO) and reached it: a
    replica it does not know, or has not heard from, is not promoted."""
    deadline = time.monotonic() + 10
    while True:
        replicas = await sentinel.sentinel_slaves(PRIMARY_NAME)
        if any(r["port"] == replica_port and r["flags"] == "slave" for r in replicas):
            return
        assert time.monotonic() < deadline, f"the Sentinel never saw the replica: {replicas}"
        await asyncio.sleep(0.05)


async def stream_ids(port: int, settings: Settings) -> list[str]:
    """The click ids in the clicks stream of the Redis at 127.0.0.1:port."""
    client = aioredis.Redis(port=port, socket_timeout=5)
    try:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(  # type: ignore[assignment]
            RedisKeys(settings.key_prefix).clicks_stream
        )
    finally:
        await client.aclose()
    return [record.decode(fields[record.STREAM_FIELD]).click_id for _, fields in entries]


async def click(client: httpx.AsyncClient, code: str) -> str:
    """One click's id; ``follow`` asserts the answer was a 302 (no 5xx)."""
    return (await follow(client, code))[1]


async def clicks_until_promoted(
    client: httpx.AsyncClient, code: str, sentinel: aioredis.Redis, replica_port: int
) -> list[str]:
    """Clicks, one each 0.1 s, from the kill until the Sentinel names the replica."""
    ids: list[str] = []
    deadline = time.monotonic() + PROMOTION_WITHIN_S
    while await primary_port(sentinel) != replica_port:
        assert time.monotonic() < deadline, "the Sentinel did not promote the replica"
        ids.append(await click(client, code))
        await asyncio.sleep(0.1)
    return ids


async def clicks_until_one_lands(
    client: httpx.AsyncClient, code: str, port: int, settings: Settings
) -> list[str]:
    """Clicks, one each 0.1 s, until one is in the new primary's stream as it is answered
    (written there, not spooled)."""
    ids: list[str] = []
    deadline = time.monotonic() + RECOVERY_WITHIN_S
    while True:
        ids.append(await click(client, code))
        if ids[-1] in await stream_ids(port, settings):
            return ids
        assert time.monotonic() < deadline, "no click reached the new primary"
        await asyncio.sleep(0.1)


async def wait_all_in_stream(port: int, settings: Settings, ids: list[str]) -> None:
    """Until every click is in the stream (those spooled during the failover replayed)."""
    deadline = time.monotonic() + RECOVERY_WITHIN_S
    while not set(ids) <= set(found := await stream_ids(port, settings)):
        assert time.monotonic() < deadline, f"missing: {sorted(set(ids) - set(found))}"
        await asyncio.sleep(0.1)
    assert set(found) == set(ids)


async def test_clicks_follow_the_primary_through_a_sentinel_failover(
    settings: Settings, pool: Pool, sentinel_set: SentinelSet
) -> None:
    settings = settings.model_copy(update={"redis_url": sentinel_set.url})
    nodes = sentinel_set.nodes
    old, new = nodes.primary.port, nodes.replica.port
    _, [(_, code)] = await new_links(pool, 1)
    sentinel = aioredis.Redis(port=sentinel_set.sentinel.port, socket_timeout=5)
    try:
        async with web(settings) as app, browser(app, "10.3.0.1") as client:
            assert await primary_port(sentinel) == old
            before = [await click(client, code) for _ in range(5)]
            assert await stream_ids(old, settings) == before
            await wait_replica_known(sentinel, new)
            await asyncio.to_thread(nodes.wait_in_sync)
            nodes.primary.kill()
            during = await clicks_until_promoted(client, code, sentinel, new)
            after = await clicks_until_one_lands(client, code, new, settings)
            await wait_all_in_stream(new, settings, before + during + after)
    finally:
        await sentinel.aclose()
