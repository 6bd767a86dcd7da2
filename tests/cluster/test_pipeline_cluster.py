"""The pipeline on a real Redis Cluster (3 primaries, 3 replicas): redirects group-commit
clicks to stream shards spread over the primaries, one flusher per shard stores each click
once in Postgres, duplicates are flagged as on one Redis (the per-address window counting an
address's clicks over every shard), a link change on one web app reaches another's cache by
its notice, click caps are counted."""

from __future__ import annotations

import asyncio
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from app.clicks.record import Flag
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.core.metrics import CLICKS_SPOOLED
from app.core.redis import create_redis, is_cluster
from app.flusher.loop import Flusher
from app.main import create_app
from app.settings import Settings
from tests.integration.test_click_caps import DESTINATION, FALLBACK, new_cap, new_links
from tests.integration.test_links_manage import create, eventually, new_publisher_key
from tests.support.accounts import bearer
from tests.support.redis_cluster import RedisClusterHarness


def session_shard(session_id: Any, shards: int) -> int:
    """The stream shard the redirect wrote a session's clicks to (app/edge/redirect.py)."""
    return zlib.crc32(str(session_id).encode()) % shards


BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
DUPLICATE = int(Flag.duplicate)
OVER_CAP = int(Flag.over_cap)


@asynccontextmanager
async def flushing(settings: Settings, pool: Pool) -> AsyncIterator[list[Flusher]]:
    """One flusher per stream shard, on the flusher's own cluster client."""
    redis = create_redis(settings, "flusher")
    assert is_cluster(redis)
    stop = asyncio.Event()
    tag = uuid.uuid4().hex[:6]
    flushers = [
        Flusher(settings, redis, pool, consumer=f"c{shard}-{tag}", shard=shard)
        for shard in range(settings.stream_shards)
    ]
    tasks = [asyncio.create_task(f.run(stop)) for f in flushers]
    try:
        yield flushers
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await redis.aclose()


@asynccontextmanager
async def web(settings: Settings) -> AsyncIterator[ASGIApp]:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        yield manager.app


@asynccontextmanager
async def browser(app: ASGIApp, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A visitor at ``address`` with a cookie jar of its own."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def follow(client: httpx.AsyncClient, code: str) -> tuple[str, str]:
    """(the Location, the click id) of one click."""
    answer = await client.get(f"/e/{code}", headers={"user-agent": BROWSER})
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    return location, parse_qs(urlsplit(location).query)["aff_click_id"][0]


async def stored(pool: Pool, ids: list[str]) -> dict[str, Any]:
    """Each click's row (flags, session) once all are stored; each click id once."""
    for _ in range(400):
        rows = await pool.fetch(
            """SELECT click_id::text AS id, flags, session_id FROM clicks
               WHERE click_id = ANY($1::uuid[])""",
            ids,
        )
        if len(rows) >= len(ids):
            assert len(rows) == len({row["id"] for row in rows}) == len(ids)
            return {row["id"]: row for row in rows}
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(rows)} of {len(ids)} clicks stored")


async def test_every_click_stored_once_from_shards_on_every_primary(
    cluster_settings: Settings, pool: Pool, redis_cluster: RedisClusterHarness
) -> None:
    settings = cluster_settings.model_copy(
        update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0}
    )
    keys = RedisKeys(settings.key_prefix)
    streams = [keys.for_shard(s).clicks_stream for s in range(settings.stream_shards)]
    assert len({redis_cluster.owner_of_key(s).port for s in streams}) == 3
    _, [(_, code)] = await new_links(pool, 1)

    async def one(n: int) -> str:
        async with browser(app, f"10.1.{n >> 8}.{n & 255}") as client:
            return (await follow(client, code))[1]

    async with web(settings) as app, flushing(settings, pool):
        ids = list(await asyncio.gather(*(one(n) for n in range(400))))
        rows = await stored(pool, ids)
    shards = {session_shard(row["session_id"], settings.stream_shards) for row in rows.values()}
    assert shards == set(range(settings.stream_shards))  # every shard's flusher had clicks


async def visit(app: ASGIApp, code: str, address: str = "10.2.0.2") -> str:
    """The click id of a new visitor's click from ``address``."""
    async with browser(app, address) as client:
        return (await follow(client, code))[1]


async def test_duplicates_are_flagged_by_session_and_by_address_across_shards(
    cluster_settings: Settings, pool: Pool
) -> None:
    settings = cluster_settings.model_copy(
        update={"duplicate_window_s": 60, "ip_clicks_per_minute": 3}
    )
    _, [(_, code)] = await new_links(pool, 1)
    async with web(settings) as app, flushing(settings, pool):
        async with browser(app, "10.2.0.1") as client:  # one visitor, twice
            session_ids = [(await follow(client, code))[1] for _ in range(2)]
        # One address, a new visitor (session, so shard) each time. The flushers of the
        # shards judge at their own pace: the first 3 are stored before the next come, so
        # that each of those has 3 earlier clicks in the address's window, whatever flusher
        # judges it.
        first = [await visit(app, code) for _ in range(3)]
        first_rows = await stored(pool, first)
        later = [await visit(app, code) for _ in range(5)]
        rows = {**await stored(pool, session_ids + later), **first_rows}
    assert [rows[i]["flags"] & DUPLICATE for i in session_ids] == [0, DUPLICATE]
    assert [rows[i]["flags"] & DUPLICATE for i in first + later] == [0] * 3 + [DUPLICATE] * 5
    address_ids = first + later
    shards = {session_shard(rows[i]["session_id"], settings.stream_shards) for i in address_ids}
    assert len(shards) > 1  # the address's clicks were judged by several flushers


async def test_a_link_change_on_one_web_app_reaches_another(
    cluster_settings: Settings, pool: Pool, admin_key: str
) -> None:
    async with web(cluster_settings) as first, web(cluster_settings) as second:
        async with browser(second, "127.0.0.1") as api:
            _, key = await new_publisher_key(api, admin_key)
            code = (await create(api, key, "https://shop.example.com/old"))["code"]
            async with browser(first, "10.3.0.1") as visitor:
                assert (await follow(visitor, code))[0].startswith("https://shop.example.com/old")
                changed = await api.patch(
                    f"/api/v1/links/{code}",
                    json={"destination": "https://shop.example.com/new"},
                    headers=bearer(key),
                )
                assert changed.status_code == 200, changed.text

                async def moved() -> bool:
                    location = (await follow(visitor, code))[0]
                    return location.startswith("https://shop.example.com/new")

                await eventually(moved, "the first app still redirects to the old destination")


async def test_click_caps_are_counted(cluster_settings: Settings, pool: Pool) -> None:
    settings = cluster_settings.model_copy(
        update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0}
    )
    publisher_id, [(_, code)] = await new_links(pool, 1)
    await new_cap(pool, publisher_id, 20, fallback_url=FALLBACK)

    async def one(n: int) -> tuple[str, str]:
        async with browser(app, f"10.4.0.{n}") as client:
            return await follow(client, code)

    async with web(settings) as app, flushing(settings, pool):
        answers = await asyncio.gather(*(one(n) for n in range(60)))
        rows = await stored(pool, [click_id for _, click_id in answers])
    where = [location.split("?")[0] for location, _ in answers]
    assert (where.count(DESTINATION), where.count(FALLBACK)) == (20, 40)
    assert sorted(row["flags"] for row in rows.values()) == [0] * 20 + [OVER_CAP] * 40


async def test_replica_acknowledgement_on_every_primary(
    cluster_settings: Settings, pool: Pool, redis_cluster: RedisClusterHarness
) -> None:
    """With CLICKTRACK_REDIS_MIN_REPLICAS=1 each node's write ends with WAIT: every batch
    confirmed by the replica of each primary it touched, every click stored once, none
    spooled."""
    settings = cluster_settings.model_copy(
        update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0, "redis_min_replicas": 1}
    )
    _, [(_, code)] = await new_links(pool, 1)
    spooled_before = CLICKS_SPOOLED._value.get()

    async def one(n: int) -> str:
        async with browser(app, f"10.3.{n >> 8}.{n & 255}") as client:
            return (await follow(client, code))[1]

    async with web(settings) as app, flushing(settings, pool):
        ids = list(await asyncio.gather(*(one(n) for n in range(200))))
        await stored(pool, ids)
    assert CLICKS_SPOOLED._value.get() == spooled_before
