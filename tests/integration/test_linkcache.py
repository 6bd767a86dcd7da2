"""The link cache when Redis is there but does not answer (frozen, overloaded, packets dropped).

Found by the fault suite (scenario 2, Redis paused with SIGSTOP): a link whose cache entry
expired during the freeze waited for Redis to come back, and every redirect of that link
with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.edge.linkcache import LinkCache
from app.links import store as link_store


@pytest.fixture
async def silent_redis() -> AsyncIterator[aioredis.Redis]:
    """A client of a server that accepts connections, reads, and never answers."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        yield client
    finally:
        await client.aclose()
        server.close()


async def test_a_silent_redis_costs_a_lookup_at_most_the_redis_timeout(
    pool: Pool, key_prefix: str, silent_redis: aioredis.Redis
) -> None:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('L') RETURNING id"
        )
        link = await link_store.create_link(conn, publisher_id, "https://shop.example.com/x")
    cache = LinkCache(
        silent_redis,
        pool,
        RedisKeys(key_prefix),
        click_id_param="aff_click_id",
        size=10,
        ttl_s=60,
        negative_ttl_s=2,
        redis_timeout_s=0.2,
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    target = await asyncio.wait_for(cache.get(link.code), 5)
    assert target is not None and target.link.id == link.id  # read from Postgres
    assert loop.time() - started < 1.0
    assert await asyncio.wait_for(cache.get("NoSuchCode"), 5) is None
