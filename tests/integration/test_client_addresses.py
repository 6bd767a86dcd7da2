"""The per-IP duplicate rule judges full client addresses, whatever CLICKTRACK_IP_MODE stores:
requests through the app from given addresses, a running flusher, rows in Postgres and the
windows in Redis (real ones both)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from app.clicks.record import Flag
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.edge.privacy import IpMasker
from app.flusher.quality import IP_WINDOW_MS, KEEP_MS, ClickClassifier
from app.flusher.sink import COLUMNS
from app.links import model as link_model
from app.links import store as link_store
from app.settings import IpMode, Settings
from tests.integration.test_quality import CHROME, click, flags_when_stored, running, visitor
from tests.support.reports import click as scripted_click

IP_SECRET = "test-ip-hash-secret-test-ip-hash-secret"
V6_NETWORK = [f"2001:db8:abcd:{n:x}::{n:x}" for n in range(1, 26)]  # one /48
V4_NETWORK = [f"198.51.100.{n}" for n in range(1, 26)]  # one /24
LIMIT = 20  # ip_clicks_per_minute's default (checked below)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ip_hash_secret": SecretStr(IP_SECRET)})


@pytest.fixture
async def link(pool: Pool) -> link_model.Link:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('A') RETURNING id"
        )
        return await link_store.create_link(conn, publisher_id, "https://example.com/a")


async def click_from_each(settings: Settings, pool: Pool, code: str, ips: list[str]) -> list[str]:
    """One click from each address in turn, each a new visitor (a session of its own: only
    the per-IP rule can flag them); the click ids, once the flusher stored them."""
    ids = []
    async with running(settings, pool) as app:
        for ip in ips:
            async with visitor(app, ip) as browser:
                ids.append(await click(browser, code, **{"user-agent": CHROME}))
        await flags_when_stored(pool, ids)
    return ids


async def stored(pool: Pool, ids: list[str]) -> list[tuple[Flag, str | None]]:
    """(flags, ip) of each click, in the order of ids."""
    rows = await pool.fetch(
        "SELECT click_id::text AS id, flags, ip FROM clicks WHERE click_id::text = ANY($1)", ids
    )
    by_id = {row["id"]: (Flag(row["flags"]), row["ip"]) for row in rows}
    return [by_id[click_id] for click_id in ids]


def test_the_limit_is_twenty_clicks_a_minute_by_default() -> None:
    assert Settings.model_fields["ip_clicks_per_minute"].default == LIMIT


@pytest.mark.parametrize(
    ("ips", "network"), [(V6_NETWORK, "2001:db8:abcd::"), (V4_NETWORK, "198.51.100.0")]
)
async def test_visitors_of_one_network_are_not_one_ip_when_truncating(
    settings: Settings, pool: Pool, link: link_model.Link, ips: list[str], network: str
) -> None:
    """25 addresses of one /48 (one /24) in a minute: 25 billable clicks, stored as the
    network's address."""
    assert len(ips) == LIMIT + 5 and settings.ip_clicks_per_minute == LIMIT
    settings = settings.model_copy(update={"ip_mode": IpMode.truncate})
    ids = await click_from_each(settings, pool, link.code, ips)
    assert await stored(pool, ids) == [(Flag(0), network)] * len(ips)


@pytest.mark.parametrize("mode", list(IpMode))
@pytest.mark.parametrize("ip", ["203.0.113.9", "2001:db8:abcd:12::9"])
async def test_one_address_over_the_limit_is_duplicate_in_every_mode(
    settings: Settings, pool: Pool, link: link_model.Link, mode: IpMode, ip: str
) -> None:
    settings = settings.model_copy(update={"ip_mode": mode})
    ids = await click_from_each(settings, pool, link.code, [ip] * (LIMIT + 5))
    flags = [flag for flag, _ in await stored(pool, ids)]
    assert flags == [Flag(0)] * LIMIT + [Flag.duplicate] * 5


@pytest.mark.parametrize(
    ("mode", "kept"),
    [(IpMode.full, "203.0.113.77"), (IpMode.truncate, "203.0.113.0"), (IpMode.hash, None)],
)
async def test_an_ipv4_mapped_address_is_its_ipv4(
    settings: Settings, pool: Pool, link: link_model.Link, mode: IpMode, kept: str | None
) -> None:
    """Written three ways, one visitor's address is stored as its IPv4 (as the mode keeps
    it) and counted in one bucket: 20 billable clicks, then duplicates."""
    settings = settings.model_copy(update={"ip_mode": mode})
    forms = ["203.0.113.77", "::ffff:203.0.113.77", "::ffff:cb00:714d"]
    ips = [forms[n % 3] for n in range(LIMIT + 5)]
    ids = await click_from_each(settings, pool, link.code, ips)
    rows = await stored(pool, ids)
    assert [flag for flag, _ in rows] == [Flag(0)] * LIMIT + [Flag.duplicate] * 5
    if kept is None:  # hash: one keyed hash, the same as the plain IPv4's
        kept = IpMasker(mode, IP_SECRET.encode())("203.0.113.77")
        assert kept is not None and len(kept) == 32
    assert {ip for _, ip in rows} == {kept}


@pytest.mark.parametrize("mode", list(IpMode))
async def test_the_window_key_lives_in_redis_only(
    settings: Settings,
    pool: Pool,
    redis: aioredis.Redis,
    key_prefix: str,
    link: link_model.Link,
    mode: IpMode,
) -> None:
    """The rule's key is in Redis, for the window (and the re-delivery margin) only; the
    stored row has the columns of the sink, the address as the mode keeps it, and no key."""
    settings = settings.model_copy(update={"ip_mode": mode})
    address = "2001:db8:abcd:12::9"
    [click_id] = await click_from_each(settings, pool, link.code, [f"[{address.upper()}]"])
    masker = IpMasker(mode, IP_SECRET.encode())
    window_key = masker.window_key(address)

    keys = RedisKeys(key_prefix)
    ttl_ms = await redis.pttl(keys.seen_by_ip(link.id, window_key))
    assert 0 < ttl_ms <= IP_WINDOW_MS + KEEP_MS
    assert [key async for key in redis.scan_iter(match=f"{key_prefix}:seen:ip:*")] == [
        keys.seen_by_ip(link.id, window_key).encode()
    ]

    row = await pool.fetchrow("SELECT * FROM clicks WHERE click_id = $1", click_id)
    assert row is not None
    assert set(row.keys()) == set(COLUMNS)
    assert row["ip"] == masker.mask(address)
    if mode is IpMode.truncate:
        assert ipaddress.ip_address(address) in ipaddress.ip_network(f"{row['ip']}/48")
    assert window_key not in {str(value) for value in row.values()}
    assert window_key not in str(tuple(row.values()))


@pytest.mark.parametrize("mode", list(IpMode))
async def test_a_client_that_is_no_address_is_redirected_and_stored_without_one(
    settings: Settings,
    pool: Pool,
    redis: aioredis.Redis,
    key_prefix: str,
    link: link_model.Link,
    mode: IpMode,
) -> None:
    """What a proxy's header or a unix socket may give as the client: the redirect happens,
    the click is stored with no address and no per-IP window is kept for it."""
    settings = settings.model_copy(update={"ip_mode": mode})
    hostile = [
        "",
        "unix:/run/clicktrack.sock",
        "2001:db8::1, 198.51.100.7",
        "203.0.113.77:443",
        "203.0.113.077",
        "203.0.113.77\x00",
        "::ffff:203.0.113.77" + " " * 100,
        "9" * 10_000,
        "\u0662\u0660\u0663.0.113.77",  # Arabic-Indic digits
    ]
    ids = await click_from_each(settings, pool, link.code, hostile)
    assert await stored(pool, ids) == [(Flag(0), None)] * len(hostile)
    assert [key async for key in redis.scan_iter(match=f"{key_prefix}:seen:ip:*")] == []


async def test_records_without_a_window_key_are_judged_by_their_stored_ip(
    settings: Settings, redis: aioredis.Redis, key_prefix: str
) -> None:
    """During an upgrade, an older web release's records (minor 0: no ``ipk``) are judged by
    ``ip`` as before; the newer ones by their key, even when their stored ip is the same."""
    classifier = ClickClassifier(settings, redis, RedisKeys(key_prefix))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    masker = IpMasker(IpMode.truncate, IP_SECRET.encode())
    older, newer = [], []
    for n, address in enumerate(V4_NETWORK):
        when = start + timedelta(seconds=n)
        older.append(replace(scripted_click(when, 1, 1, f"old{n}"), ip=masker(address)))
        newer.append(
            replace(
                scripted_click(when, 2, 1, f"new{n}"),
                ip=masker(address),
                ip_key=masker.window_key(address),
            )
        )
    try:
        await classifier.classify(older + newer)
    finally:
        await classifier.close()
    assert [Flag(c.flags) for c in older] == [Flag(0)] * LIMIT + [Flag.duplicate] * 5
    assert [Flag(c.flags) for c in newer] == [Flag(0)] * len(V4_NETWORK)
