"""End to end on real Redis and Postgres: requests through the app, a running flusher, rows.

Every click answered with a 302 must become exactly one row carrying what was sent.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.flusher.loop import Flusher
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.support.proxy import CuttableProxy

VALUES = [None, "001", "blog-42", "café ☕", "日本語", "a b&c=d", "x" * 128, "🎉" * 128]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0", "Mozilla/5.0 (iPhone) Safari/604.1"]


@dataclass(frozen=True)
class Sent:
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    user_agent: str
    referer: str


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every request here comes from one client with one cookie jar: quality rules would
    flag them as duplicates. They are tested in test_quality.py; here, transport only."""
    return settings.model_copy(update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0})


@pytest.fixture
async def link(pool: Pool) -> link_model.Link:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('E') RETURNING id"
        )
        return await link_store.create_link(conn, publisher_id, "https://shop.example.com/p?x=1")


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url="http://t") as c,
    ):
        yield c


@asynccontextmanager
async def running_flushers(
    settings: Settings, pool: Pool, count: int
) -> AsyncIterator[list[Flusher]]:
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    stop = asyncio.Event()
    flushers = [
        Flusher(settings, redis, pool, consumer=f"f{n}", shard=shard)
        for n in range(count)
        for shard in range(settings.stream_shards)
    ]
    tasks = [asyncio.create_task(f.run(stop)) for f in flushers]
    try:
        yield flushers
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await redis.aclose()


async def click_many(
    client: httpx.AsyncClient, code: str, n: int, *, seed: int, concurrency: int = 64
) -> dict[str, Sent]:
    """Send n clicks, concurrently; return what each accepted click id was sent with."""
    rng = random.Random(seed)
    plans = []
    for i in range(n):
        af, cn, cv, dp = (rng.choice(VALUES) for _ in range(4))
        sent = Sent(
            af,
            cn,
            cv,
            dp,
            user_agent=rng.choice(AGENTS),
            referer=f"https://blog.example.org/post/{i}",
        )
        query = "&".join(
            f"{name}={quote(value)}"
            for name, value in zip(
                ("af", "cn", "cv", "dp"), (sent.af, sent.cn, sent.cv, sent.dp), strict=True
            )
            if value is not None
        )
        plans.append((query, sent))
    accepted: dict[str, Sent] = {}
    queue = iter(plans)

    async def worker() -> None:
        for query, sent in queue:
            client.cookies.clear()  # a new visitor each time: sessions spread over shards
            response = await client.get(
                f"/e/{code}?{query}",
                headers={"user-agent": sent.user_agent, "referer": sent.referer},
            )
            assert response.status_code == 302, response.text
            click_id = parse_qs(urlsplit(response.headers["location"]).query)["aff_click_id"][0]
            accepted[click_id] = sent

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    assert len(accepted) == n
    return accepted


async def wait_for_rows(pool: Pool, code: str, expected: int) -> None:
    """Until the flusher has stored as many rows as expected; a minute at most."""
    for _ in range(600):
        count = await pool.fetchval("SELECT count(*) FROM clicks WHERE code = $1", code)
        if count >= expected:
            return
        await asyncio.sleep(0.1)


def spool_files(spool_dir: Path) -> list[Path]:
    return sorted(spool_dir.glob("spool-*.log"))


async def assert_stored_exactly(
    pool: Pool, link: link_model.Link, accepted: dict[str, Sent]
) -> None:
    await wait_for_rows(pool, link.code, len(accepted))
    rows = await pool.fetch("SELECT * FROM clicks WHERE code = $1", link.code)
    by_id = {str(row["click_id"]): row for row in rows}
    assert len(rows) == len(by_id) == len(accepted), "lost or duplicated clicks"
    assert by_id.keys() == accepted.keys()
    now = datetime.now(UTC)
    for click_id, sent in accepted.items():
        row = by_id[click_id]
        assert (row["af"], row["cn"], row["cv"], row["dp"]) == (sent.af, sent.cn, sent.cv, sent.dp)
        assert row["user_agent"] == sent.user_agent
        assert row["referer"] == sent.referer
        assert (row["code"], row["publisher_id"]) == (link.code, link.publisher_id)
        assert row["method"] == "GET" and row["flags"] == 0
        assert uuid.UUID(click_id).version == 7
        assert (now - row["ts"]).total_seconds() < 300


@pytest.mark.parametrize(("flusher_count", "shards"), [(1, 1), (2, 1), (2, 4)])
async def test_ten_thousand_clicks_become_ten_thousand_rows(
    settings: Settings, pool: Pool, link: link_model.Link, flusher_count: int, shards: int
) -> None:
    settings = settings.model_copy(update={"stream_shards": shards})
    async with (
        running_flushers(settings, pool, flusher_count) as flushers,
        running_app(settings) as client,
    ):
        accepted = await click_many(client, link.code, 10_000, seed=flusher_count * shards)
        await assert_stored_exactly(pool, link, accepted)
    if flusher_count == 2 and shards == 1:
        assert all(f.stats.written > 0 for f in flushers), "every flusher should have worked"
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    try:
        for shard in range(shards):
            stream = RedisKeys(settings.key_prefix, shard).clicks_stream
            assert await redis.xlen(stream) == 0  # trimmed
    finally:
        await redis.aclose()
    if shards > 1:
        by_shard = [
            sum(f.stats.written for f in flushers if f.keys.shard == n) for n in range(shards)
        ]
        assert all(by_shard), f"every shard should have had clicks: {by_shard}"


async def test_redis_unreachable_clicks_are_spooled_then_stored_once(
    settings: Settings, pool: Pool, link: link_model.Link, spool_dir: Path
) -> None:
    proxy = CuttableProxy("127.0.0.1", urlsplit(TEST_REDIS_URL).port or 6379)
    await proxy.start()
    through_proxy = settings.model_copy(update={"redis_url": proxy.url()})
    try:
        async with running_flushers(settings, pool, 1), running_app(through_proxy) as client:
            before = await click_many(client, link.code, 200, seed=1)
            proxy.sever()
            during = await click_many(client, link.code, 500, seed=2)
            assert spool_files(spool_dir), "clicks should have been spooled"
            proxy.heal()
            after = await click_many(client, link.code, 200, seed=3)
            await assert_stored_exactly(pool, link, before | during | after)
            for _ in range(100):  # the replayer deletes each spool file once replayed
                if not spool_files(spool_dir):
                    break
                await asyncio.sleep(0.1)
            assert not [f for f in spool_files(spool_dir) if f.stat().st_size]
    finally:
        await proxy.stop()


async def test_spool_left_by_a_dead_worker_is_replayed_by_the_next(
    settings: Settings, pool: Pool, link: link_model.Link, spool_dir: Path
) -> None:
    proxy = CuttableProxy("127.0.0.1", urlsplit(TEST_REDIS_URL).port or 6379)
    await proxy.start()
    through_proxy = settings.model_copy(update={"redis_url": proxy.url()})
    try:
        proxy.sever()
        async with running_app(through_proxy) as client:
            accepted = await click_many(client, link.code, 300, seed=4)
        # That worker is gone with Redis still unreachable: its spool stays on disk.
        assert spool_files(spool_dir)
        async with running_flushers(settings, pool, 1), running_app(settings):
            await assert_stored_exactly(pool, link, accepted)
    finally:
        await proxy.stop()
