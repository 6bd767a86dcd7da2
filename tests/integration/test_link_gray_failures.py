"""The redirect's link resolution when a store half-works (issue 15): no lookup may hang, and
none may take longer than its bounds.

Found: a mirror record that did not decode, an exception while preparing the target or a
cancelled first request left every concurrent request for that code waiting forever; a
frozen Postgres held an uncached link for 60 s (pool acquire plus the 30 s command timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from app.core.db import Pool
from app.core.keys import RedisKeys
from app.core.metrics import LINK_MIRROR_UNREADABLE
from app.core.resources import Resources
from app.edge import linkcache
from app.edge.linkcache import LinkCache, LinkUnavailable, RedirectTarget
from app.links import mirror
from app.links import store as link_store
from app.links.model import Link, LinkStatus
from app.main import build_redirect
from app.settings import Settings

# Every lookup below must be over well within this; a hang shows as a timeout at this bound.
HANG_S = 3.0


@pytest.fixture
async def link(pool: Pool) -> Link:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('G') RETURNING id"
        )
        return await link_store.create_link(conn, publisher_id, "https://shop.example.com/g?x=1")


def make_cache(redis: aioredis.Redis, pool: Pool, key_prefix: str, **options: Any) -> LinkCache:
    return LinkCache(
        redis,
        pool,
        RedisKeys(key_prefix),
        click_id_param="aff_click_id",
        size=100,
        ttl_s=60,
        negative_ttl_s=2,
        **options,
    )


async def together(get: Callable[[], Awaitable[Any]], n: int) -> list[Any]:
    """n concurrent lookups, each a result or the exception it raised; fails on a hang."""
    async with asyncio.timeout(HANG_S):
        return await asyncio.gather(*(get() for _ in range(n)), return_exceptions=True)


# --- Every future is settled ------------------------------------------------------------------


async def test_an_undecodable_mirror_record_is_read_through_for_every_waiter(
    pool: Pool, redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    key = RedisKeys(key_prefix).link(link.code)
    for raw in (b"not json", b"[1, 2]", b'{"id": 1}', b"null", orjson.dumps([[1], 1, 2])):
        await redis.set(key, raw)
        cache = make_cache(redis, pool, key_prefix)
        results = await together(partial(cache.get, link.code), 5)
        assert [r.link.id for r in results] == [link.id] * 5, (raw, results)
        assert await redis.get(key) == raw  # left as it is: not ours to judge


async def test_an_exception_while_preparing_the_target_reaches_every_waiter(
    pool: Pool,
    redis: aioredis.Redis,
    key_prefix: str,
    link: Link,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(destination: str, param: str) -> tuple[str, str]:
        raise RuntimeError("cannot prepare")

    monkeypatch.setattr(linkcache, "_split_location", broken)
    cache = make_cache(redis, pool, key_prefix)
    results = await together(lambda: cache.get(link.code), 5)
    assert all(isinstance(r, LinkUnavailable) for r in results), results


async def test_a_cancelled_first_request_leaves_the_others_their_answer(
    pool: Pool, redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    cache = make_cache(redis, pool, key_prefix)
    async with pool.acquire() as conn, conn.transaction():
        # Postgres holds the read-through until the lock is released: the first request
        # is still loading when it is cancelled.
        await conn.execute("LOCK TABLE links IN ACCESS EXCLUSIVE MODE")
        first = asyncio.create_task(cache.get(link.code))
        await asyncio.sleep(0.05)
        others = [asyncio.create_task(cache.get(link.code)) for _ in range(4)]
        await asyncio.sleep(0.05)
        first.cancel()
        await asyncio.sleep(0.05)
    async with asyncio.timeout(HANG_S):
        results = await asyncio.gather(*others, return_exceptions=True)
    assert first.cancelled()
    assert all(isinstance(r, RedirectTarget) and r.link.id == link.id for r in results), results


# --- A Postgres that does not answer ----------------------------------------------------------


@pytest.fixture
async def silent_postgres() -> AsyncIterator[tuple[Pool, list[int]]]:
    """A pool whose server accepts connections and never says a word (a frozen Postgres, a
    black-holed network), and the count of connections it was opened so far."""
    opened = [0]

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened[0] += 1
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = await asyncpg.create_pool(
        f"postgresql://postgres@127.0.0.1:{port}/x", min_size=0, max_size=10, timeout=60
    )
    assert silent is not None
    try:
        yield silent, opened
    finally:
        silent.terminate()
        server.close()


async def test_a_silent_postgres_answers_an_uncached_link_within_a_second(
    redis: aioredis.Redis, key_prefix: str, silent_postgres: tuple[Pool, list[int]]
) -> None:
    silent, _ = silent_postgres
    cache = make_cache(redis, silent, key_prefix)
    started = time.monotonic()
    results = await together(lambda: cache.get("NeverSeen1"), 3)
    assert all(isinstance(r, LinkUnavailable) for r in results), results
    assert time.monotonic() - started < 1.0


async def test_a_silent_postgres_serves_the_expired_copy_and_asks_again_later(
    pool: Pool,
    redis: aioredis.Redis,
    key_prefix: str,
    link: Link,
    silent_postgres: tuple[Pool, list[int]],
) -> None:
    silent, _ = silent_postgres
    cache = make_cache(redis, pool, key_prefix, load_timeout_s=0.3)
    await cache.get(link.code)  # cached, and filled into the mirror
    await filled(redis, RedisKeys(key_prefix).link(link.code))
    await redis.delete(RedisKeys(key_prefix).link(link.code))
    cache._pool = silent  # Postgres freezes
    cache._entries[link.code] = (cache._entries[link.code][0], time.monotonic() - 1)  # expired
    started = time.monotonic()
    target = await asyncio.wait_for(cache.get(link.code), HANG_S)
    assert target is not None and target.link.id == link.id
    assert 0.25 < time.monotonic() - started < 1.0
    # The next requests within STALE_RETRY_S get the copy at once, without asking again.
    assert cache.cached(link.code) is target


async def test_a_silent_postgres_ties_up_a_few_connections_whatever_the_codes_asked(
    redis: aioredis.Redis, key_prefix: str, silent_postgres: tuple[Pool, list[int]]
) -> None:
    silent, opened = silent_postgres
    cache = make_cache(redis, silent, key_prefix, load_concurrency=2, load_timeout_s=0.3)
    started = time.monotonic()
    async with asyncio.timeout(HANG_S):
        results = await asyncio.gather(
            *(cache.get(f"Code{n}") for n in range(20)), return_exceptions=True
        )
    assert all(isinstance(r, LinkUnavailable) for r in results), results
    assert time.monotonic() - started < 1.0
    await asyncio.sleep(0.1)
    assert opened[0] == 2  # the rest never reached the pool: the API keeps its connections
    # Still held while the server stays silent: the next codes fail fast, not after a pile-up.
    started = time.monotonic()
    with pytest.raises(LinkUnavailable):
        await cache.get("CodeLater")
    assert time.monotonic() - started < 0.5
    assert opened[0] == 2


async def test_the_redirect_answers_503_with_retry_after_within_a_second(
    settings: Settings, redis: aioredis.Redis, silent_postgres: tuple[Pool, list[int]]
) -> None:
    silent, _ = silent_postgres
    resources = Resources(settings, silent, redis, RedisKeys(settings.key_prefix))
    redirect = build_redirect(settings, resources, redis)
    transport = httpx.ASGITransport(app=redirect)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        started = time.monotonic()
        answers = await asyncio.gather(*(client.get(f"/e/Uncached{n % 3}") for n in range(6)))
        elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [503] * 6
    assert all(a.headers["retry-after"] == "5" for a in answers)
    assert elapsed < 1.0


# --- The versioned mirror record --------------------------------------------------------------


def unreadable_count(reason: str) -> float:
    value: float = LINK_MIRROR_UNREADABLE.labels(reason)._value.get()
    return value


async def test_a_newer_minor_record_is_read_and_its_extra_fields_ignored(
    pool: Pool, redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    key = RedisKeys(key_prefix).link(link.code)
    # Postgres says otherwise: what the cache answers came from the mirror.
    versioned = [[mirror.MAJOR, mirror.MINOR + 3], 17, link.id, 1, "https://m.example.com/"]
    records = {
        # after the five fields, the rules (minor 1), the caps and their time (minor 2),
        # then what a later minor adds
        "newer minor": [*versioned, True, None, [], [], 0, "seventh", {"eighth": [1]}],
        "unversioned, a sixth field": [link.id, 1, "https://m.example.com/", True, None, 6],
    }
    for what, record in records.items():
        await redis.set(key, orjson.dumps(record))
        before = unreadable_count("corrupt") + unreadable_count("major")
        target = await make_cache(redis, pool, key_prefix).get(link.code)
        assert target is not None and target.link.destination == "https://m.example.com/", what
        assert unreadable_count("corrupt") + unreadable_count("major") == before


async def test_a_record_of_another_major_is_read_through_counted_and_left(
    pool: Pool,
    redis: aioredis.Redis,
    key_prefix: str,
    link: Link,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = RedisKeys(key_prefix).link(link.code)
    raw = orjson.dumps([[mirror.MAJOR + 1, 0], 1, {"anything": "new"}])
    await redis.set(key, raw)
    before = unreadable_count("major")
    mirror._UNREADABLE["major"].logged_at = float("-inf")
    with caplog.at_level(logging.WARNING, logger="app.links.mirror"):
        for _ in range(3):
            target = await make_cache(redis, pool, key_prefix).get(link.code)
            assert target is not None and target.link.destination == link.destination
    assert unreadable_count("major") == before + 3
    assert len([r for r in caplog.records if "not readable" in r.getMessage()]) == 1
    assert await redis.get(key) == raw


async def test_corrupt_records_are_counted(
    pool: Pool, redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    key = RedisKeys(key_prefix).link(link.code)
    bad = [b"\xff\xfe", b"[]", b'["1", 2, "d", true, null]', b"[1, 2, 3, true, null]"]
    bad += [orjson.dumps([[1, 0], "soon", link.id, 1, "https://x.example.com/", True, None])]
    bad += [orjson.dumps([[1, 0], 1, link.id, 1, "https://x.example.com/", "yes", None])]
    for raw in bad:
        await redis.set(key, raw)
        before = unreadable_count("corrupt")
        target = await make_cache(redis, pool, key_prefix).get(link.code)
        assert target is not None and target.link.destination == link.destination, raw
        assert unreadable_count("corrupt") == before + 1, raw


async def filled(redis: aioredis.Redis, key: str) -> bytes:
    """The mirror's record once the cache's background fill wrote it."""
    for _ in range(int(HANG_S * 100)):
        raw = await redis.get(key)
        if isinstance(raw, bytes):
            return raw
        await asyncio.sleep(0.01)
    raise AssertionError(f"{key} was never filled")


async def test_the_read_through_fills_the_mirror_with_the_links_updated_at(
    pool: Pool, redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    key = RedisKeys(key_prefix).link(link.code)
    await make_cache(redis, pool, key_prefix).get(link.code)
    raw = await filled(redis, key)
    assert orjson.loads(raw)[:2] == [
        [mirror.MAJOR, 0],  # a link without rules: written as before rules existed
        mirror.from_link(link).updated_us,
    ]
    # The read-through knows the link's caps (none), a published change does not.
    assert mirror.decode(link.code, raw) == replace(mirror.from_link(link), caps=(), caps_us=0)
    await redis.delete(key)
    await make_cache(redis, pool, key_prefix, legacy_mirror=True).get(link.code)
    raw = await filled(redis, key)
    assert orjson.loads(raw) == [link.id, link.publisher_id, link.destination, True, None]


# --- Changes published out of order -----------------------------------------------------------


async def test_an_older_change_published_late_does_not_overwrite_a_newer_one(
    pool: Pool, redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    keys = RedisKeys(key_prefix)
    async with pool.acquire() as conn:
        disabled = await link_store.update_link(conn, link.id, status=LinkStatus.disabled)
    assert disabled.updated_at > link.updated_at
    assert await mirror.publish_change(redis, keys, disabled)
    assert not await mirror.publish_change(redis, keys, link)  # the request that lost the race
    target = await make_cache(redis, pool, key_prefix).get(link.code)
    assert target is not None and not target.active
    assert not await mirror.publish_change(redis, keys, disabled)  # the same change: kept

    # Replaced: an unversioned record (no time to compare), or one that does not decode.
    for raw in (orjson.dumps([link.id, 1, "https://old.example.com/", True, None]), b"{"):
        await redis.set(keys.link(link.code), raw)
        assert await mirror.publish_change(redis, keys, link)
        assert mirror.decode(link.code, await redis.get(keys.link(link.code)) or b"") == (
            mirror.from_link(link)
        )
    # Another major's record of a newer change is kept: it may know better.
    newer = orjson.dumps([[mirror.MAJOR + 1, 0], mirror.from_link(disabled).updated_us, "?"])
    await redis.set(keys.link(link.code), newer)
    assert not await mirror.publish_change(redis, keys, link)
    assert await redis.get(keys.link(link.code)) == newer
    assert await redis.ttl(keys.link(link.code)) == -1  # untouched: not even its expiry


async def test_a_published_change_is_announced_even_when_not_written(
    redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    keys = RedisKeys(key_prefix)
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(keys.links_changed_channel)
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        newer = replace(link, updated_at=link.updated_at + timedelta(seconds=1))
        assert await mirror.publish_change(redis, keys, newer)
        assert not await mirror.publish_change(redis, keys, link)
        received = [await pubsub.get_message(timeout=1) for _ in range(2)]
    assert [m and m["data"] for m in received] == [link.code.encode()] * 2


async def test_legacy_writes_publish_the_unversioned_record(
    redis: aioredis.Redis, key_prefix: str, link: Link
) -> None:
    keys = RedisKeys(key_prefix)
    assert await mirror.publish_change(redis, keys, link, legacy=True)
    raw = await redis.get(keys.link(link.code))
    assert raw is not None and orjson.loads(raw)[0] == link.id
    assert 0 < await redis.ttl(keys.link(link.code)) <= mirror.MIRROR_TTL_S


async def test_the_api_publishes_a_patch_with_its_updated_at(
    app_client: httpx.AsyncClient, admin_key: str, redis: aioredis.Redis, settings: Settings
) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    publisher = await app_client.post("/api/v1/publishers", json={"name": "P"}, headers=auth)
    created = await app_client.post(
        "/api/v1/links",
        json={"destination": "https://example.com/", "publisher_id": publisher.json()["id"]},
        headers=auth,
    )
    code = created.json()["code"]
    patched = await app_client.patch(
        f"/api/v1/links/{code}", json={"status": "disabled"}, headers=auth
    )
    raw = await redis.get(RedisKeys(settings.key_prefix).link(code))
    assert raw is not None
    updated = datetime.fromisoformat(patched.json()["updated_at"])
    assert orjson.loads(raw)[1] == (updated - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(
        microseconds=1
    )
    assert (await app_client.get(f"/e/{code}")).status_code == 404
