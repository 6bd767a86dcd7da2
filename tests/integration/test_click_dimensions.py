"""Traffic dimensions stored per click (issue 19, step 2), end to end on real Redis and
Postgres: requests through the redirect app with real user agents from addresses whose
country the embedded registry data knows, a running flusher, the rows' dimension columns.
Also: the privacy modes keep the country (the redirect resolves it before truncating or
hashing and carries it in the record), records of older minors still flush, the switch
``CLICKTRACK_DIMENSIONS=off``, and ``backfill-dimensions`` on clicks stored without them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from app.clicks import stream
from app.clicks.record import encode
from app.core.db import Pool
from app.core.keys import RedisKeys
from app.dimensions.agent import Agent
from app.dimensions.country import GeoDatabaseError
from app.flusher.dimensions import DIMENSION_COLUMNS, resolver_for
from app.flusher.loop import Flusher
from app.links import model as link_model
from app.links import store as link_store
from app.settings import IpMode, Settings
from tests.integration.test_cli import run_cli
from tests.integration.test_flusher import drain, make_clicks
from tests.integration.test_quality import click, running, visitor
from tests.unit.test_dimensions_agent import CASES
from tests.unit.test_dimensions_country import STABLE

AGENTS = ["iPhone Safari", "Pixel Chrome", "iPad Safari", "Windows Chrome", "Googlebot"]
ADDRESSES = ["193.0.6.139", "200.160.2.3", "202.12.29.1", "81.2.69.142", "2001:67c:2e8::1"]
REFERER = "https://News.Example.com:443/story?id=7"
LANGUAGE = "pt-BR,pt;q=0.9,en;q=0.8"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Each visitor is new, but a few share an address: no quality rule in the way here."""
    return settings.model_copy(update={"duplicate_window_s": 0, "ip_clicks_per_minute": 0})


@pytest.fixture
async def link(pool: Pool) -> link_model.Link:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('D') RETURNING id"
        )
        return await link_store.create_link(conn, publisher_id, "https://example.com/d")


async def dimensions_when_stored(pool: Pool, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The dimension columns (and ``ip``) of each click, once the flusher stored them all."""
    columns = ", ".join(DIMENSION_COLUMNS)
    for _ in range(300):
        rows = await pool.fetch(
            f"SELECT click_id::text AS id, ip, {columns} FROM clicks "
            "WHERE click_id::text = ANY($1)",
            list(ids),
        )
        if len(rows) == len(ids):
            return {row["id"]: dict(row) for row in rows}
        await asyncio.sleep(0.1)
    raise AssertionError("the flusher did not store every click")


def expected_agent(row: dict[str, Any]) -> Agent:
    return Agent(row["device"], row["browser"], row["browser_major"], row["os"], row["os_major"])


async def click_from(
    settings: Settings, pool: Pool, code: str, plan: Sequence[tuple[str, str]]
) -> list[str]:
    """One click per (agent name, address) through the app, with a referer and a language;
    their ids, once a flusher stored them."""
    ids = []
    async with running(settings, pool) as app:
        for agent, address in plan:
            async with visitor(app, address) as browser:
                headers = {
                    "user-agent": CASES[agent][0],
                    "referer": REFERER,
                    "accept-language": LANGUAGE,
                }
                ids.append(await click(browser, code, **headers))
        await dimensions_when_stored(pool, ids)
    return ids


async def test_clicks_land_with_their_dimensions(
    settings: Settings, pool: Pool, link: link_model.Link
) -> None:
    """Phones, a tablet, a desktop and a crawler from five countries (IPv4 and IPv6)."""
    plan = list(zip(AGENTS, ADDRESSES, strict=True))
    ids = await click_from(settings, pool, link.code, plan)
    stored = await dimensions_when_stored(pool, ids)
    for click_id, (agent, address) in zip(ids, plan, strict=True):
        row = stored[click_id]
        assert row["ip"] == address  # full mode: the flusher resolves the stored address
        assert row["country"] == STABLE[address], address
        assert row["asn"] is None  # the embedded data has no ASN
        assert expected_agent(row) == CASES[agent][1], agent
        assert row["referrer_host"] == "news.example.com"
        assert row["language"] == "pt"


@pytest.mark.parametrize("mode", [IpMode.truncate, IpMode.hash])
async def test_privacy_modes_keep_the_country(
    settings: Settings, pool: Pool, link: link_model.Link, mode: IpMode
) -> None:
    """The stored address is cut or hashed; its country was resolved before, in the
    redirect, from the full address."""
    settings = settings.model_copy(update={"ip_mode": mode})
    plan = [("Windows Chrome", address) for address in STABLE]
    ids = await click_from(settings, pool, link.code, plan)
    stored = await dimensions_when_stored(pool, ids)
    for click_id, (_, address) in zip(ids, plan, strict=True):
        row = stored[click_id]
        assert row["ip"] != address
        assert row["country"] == STABLE[address], (mode, address)
        assert row["device"] == "desktop"


async def test_an_address_without_a_country_is_unknown(
    settings: Settings, pool: Pool, link: link_model.Link
) -> None:
    """Private, documentation and loopback addresses: no country, the rest still resolved;
    in every mode (the redirect carries None, the flusher finds none)."""
    plan = [("Pixel Chrome", a) for a in ("10.1.2.3", "192.0.2.1", "::1", "2001:db8::7")]
    for mode in IpMode:
        ids = await click_from(settings.model_copy(update={"ip_mode": mode}), pool, link.code, plan)
        for row in (await dimensions_when_stored(pool, ids)).values():
            assert row["country"] is None
            assert row["device"] == "mobile"


@pytest.fixture
def keys(key_prefix: str) -> RedisKeys:
    return RedisKeys(key_prefix, 0)


def older_minor(payload: bytes, minor: int) -> bytes:
    """A record as a redirect of minor 0 (no ``mv``, no ``ipk``) or 1 (no ``cc``) wrote it."""
    body = orjson.loads(payload)
    del body["cc"]
    if minor == 0:
        del body["mv"], body["ipk"]
    else:
        body["mv"] = minor
    return orjson.dumps(body)


async def test_records_of_older_minors_flush_with_their_dimensions(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, link: link_model.Link
) -> None:
    """A spool replayed late, a parked entry redriven, an older redirect during an upgrade:
    their clicks are stored, with dimensions from the stored address and headers."""
    clicks = make_clicks(link.code, 6)
    agents = itertools.cycle(AGENTS)
    addresses = itertools.cycle(STABLE)
    for one in clicks:
        one.user_agent = CASES[next(agents)][0]
        one.ip = next(addresses)
        one.referer = REFERER
    await stream.ensure_group(redis, keys)
    payloads = [older_minor(encode(one), n % 2) for n, one in enumerate(clicks)]
    await stream.add_many(redis, keys, payloads)
    await drain(redis, keys, Flusher(settings, redis, pool))
    stored = await dimensions_when_stored(pool, [one.click_id for one in clicks])
    for one in clicks:
        row = stored[one.click_id]
        assert row["country"] == STABLE[one.ip or ""]
        assert row["referrer_host"] == "news.example.com"
        assert row["device"] is not None


async def test_a_carried_country_wins_and_is_checked(
    settings: Settings, redis: aioredis.Redis, pool: Pool, keys: RedisKeys, link: link_model.Link
) -> None:
    """The country a record carries (resolved from the full address) wins over the one of
    the stored address; a value that is no country code is ignored, not stored."""
    carried, junk = make_clicks(link.code, 2)
    for one in (carried, junk):
        one.ip = "193.0.6.0"  # truncated: NL in the registries' data
    carried.country, junk.country = "BR", "not a country"
    await stream.ensure_group(redis, keys)
    await stream.add_many(redis, keys, [encode(carried), encode(junk)])
    await drain(redis, keys, Flusher(settings, redis, pool))
    stored = await dimensions_when_stored(pool, [carried.click_id, junk.click_id])
    assert stored[carried.click_id]["country"] == "BR"
    assert stored[junk.click_id]["country"] == "NL"


async def test_switched_off_nothing_is_resolved_then_the_backfill_fills_once(
    settings: Settings, pool: Pool, link: link_model.Link, database_url: str
) -> None:
    """``CLICKTRACK_DIMENSIONS=off``: the columns stay NULL, as for the clicks stored before
    migration 028. ``backfill-dimensions`` (the CLI as an operator runs it, small batches)
    fills them from what the rows kept; a second run changes nothing."""
    plan = [*zip(AGENTS, ADDRESSES, strict=True), ("Windows Chrome", "10.0.0.1")]
    ids = await click_from(settings.model_copy(update={"dimensions": False}), pool, link.code, plan)
    before = await dimensions_when_stored(pool, ids)
    assert all(row[column] is None for row in before.values() for column in DIMENSION_COLUMNS)

    today = datetime.now(UTC).date().isoformat()
    args = ("backfill-dimensions", "--from", today, "--to", today, "--batch", "2")
    first = run_cli(database_url, *args)
    assert first.returncode == 0, first.stderr
    after = await dimensions_when_stored(pool, ids)
    for click_id, (agent, address) in zip(ids, plan, strict=True):
        row = after[click_id]
        assert row["country"] == STABLE.get(address), address
        assert expected_agent(row) == CASES[agent][1], agent
        assert (row["referrer_host"], row["language"]) == ("news.example.com", "pt")

    second = run_cli(database_url, *args)
    assert second.returncode == 0, second.stderr
    assert "filled the dimensions of 0 clicks" in second.stdout
    assert await dimensions_when_stored(pool, ids) == after


def test_the_backfill_refuses_a_range_that_ends_before_it_starts(database_url: str) -> None:
    result = run_cli(
        database_url, "backfill-dimensions", "--from", "2026-02-02", "--to", "2026-02-01"
    )
    assert result.returncode == 1
    assert "--to is before --from" in result.stderr


def test_the_settings_are_read_by_their_documented_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKTRACK_DIMENSIONS", "off")
    monkeypatch.setenv("CLICKTRACK_GEO_DATABASE", "/srv/geo/GeoLite2-Country.mmdb")
    monkeypatch.setenv("CLICKTRACK_COUNTRY_HEADER", "CF-IPCountry")
    settings = Settings()
    assert settings.dimensions is False
    assert str(settings.geo_database_path) == "/srv/geo/GeoLite2-Country.mmdb"
    assert settings.country_header == "CF-IPCountry"
    assert resolver_for(settings) is None  # off: nothing resolved


def test_an_unusable_geo_database_stops_the_flusher_at_startup(
    settings: Settings, tmp_path: Path
) -> None:
    """At construction, with the configuration error's message, never on a click."""
    not_mmdb = tmp_path / "country.mmdb"
    not_mmdb.write_bytes(b"not a MaxMind database")
    broken = settings.model_copy(update={"geo_database_path": not_mmdb})
    unused: Any = None  # neither Redis nor Postgres is reached
    with pytest.raises(GeoDatabaseError, match=r"country\.mmdb"):
        Flusher(broken, unused, unused)
