"""Traffic reports by the traffic dimensions (issue 19), on real Redis and Postgres.

A scripted mix of clicks with real user agents (phones, a tablet, desktops, a crawler),
addresses whose country the embedded registry data knows (and one it cannot know),
referers, Accept-Language headers, flagged clicks and sessions that come back, goes through
the stream and the real flusher, which resolves and stores the dimensions and counts them
into the rollups; older clicks are flushed with ``CLICKTRACK_DIMENSIONS=off`` (NULL,
"unknown"). Every expected figure is worked out here in plain Python over the script: per
group, and that each dimension's groups add up to the plain report. Last,
``backfill-dimensions`` fills the old clicks and recounts their days.
"""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from random import Random
from typing import Any, get_args

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from app.accounts.apikeys import Role, create_key
from app.clicks.record import Click, Flag
from app.core.db import Pool
from app.dimensions.agent import Agent, DeviceType
from app.links import store as link_store
from app.main import create_app
from app.settings import Settings
from app.traffic import counts, recount, rollups
from app.traffic.counts import TRAFFIC, Dimension, TrafficQuery
from app.traffic.days import zone_name
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_cli import run_cli
from tests.support.reports import EPOCH, click, flush, own_database, own_pool
from tests.support.zones import label, local_day, local_today
from tests.unit.test_dimensions_agent import CASES
from tests.unit.test_dimensions_country import STABLE

MAC_FIREFOX = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0"
AGENTS: dict[str, tuple[str, Agent]] = {
    name: CASES[name]
    for name in ("iPhone Safari", "Pixel Chrome", "iPad Safari", "Windows Chrome", "Googlebot")
}
AGENTS["macOS Firefox"] = (MAC_FIREFOX, Agent("desktop", "Firefox", 133, "Mac OS X", 10))
ADDRESSES = ["193.0.6.139", "200.160.2.3", "202.12.29.1", "8.8.8.8", "2001:67c:2e8::1", "10.0.0.1"]
REFERERS = {
    None: None,
    "https://News.Example.com:443/story?id=7": "news.example.com",
    "https://search.example.org/q?x=1": "search.example.org",
}
LANGUAGES = {None: None, "pt-BR,pt;q=0.9,en;q=0.8": "pt", "de-DE,de;q=0.9": "de", "en-US": "en"}
AFS = [None, "blog", "news"]
FLAGS = [Flag.bot, Flag.duplicate, Flag.head]
TRAFFIC_NAMES = [d.value for d in TRAFFIC]
VERSION_NAMES = ["browser_version", "os_version"]


def version(family: str | None, major: int | None) -> str | None:
    if family is None:
        return None
    return family if major is None else f"{family} {major}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Scripted:
    click: Click
    dims: dict[str, str | None]  # what the flusher resolves: by traffic dimension's name
    stored_without: bool = False  # flushed with the dimensions off (NULL until the backfill)


@dataclass(repr=False)  # hypothesis prints the fixtures of a failing example
class World:
    client: httpx.AsyncClient
    pool: Pool
    settings: Settings
    database_url: str
    key: str
    publisher_id: int
    codes: dict[int, str]
    clicks: list[Scripted] = field(default_factory=list)
    backfilled: bool = False

    def __repr__(self) -> str:
        return f"World({len(self.clicks)} clicks)"


def resolved(
    user_agent: str, address: str, referer: str | None, language: str | None
) -> dict[str, str | None]:
    agent = next(a for ua, a in AGENTS.values() if ua == user_agent)
    return {
        "country": STABLE.get(address),
        "device": agent.device,
        "browser": agent.browser,
        "os": agent.os,
        "referrer": REFERERS[referer],
        "language": LANGUAGES[language],
        "browser_version": version(agent.browser, agent.browser_major),
        "os_version": version(agent.os, agent.os_major),
    }


def scripted_clicks(
    publisher_id: int, codes: dict[int, str], days: Sequence[date], n: int, seed: int
) -> list[Scripted]:
    rng = Random(seed)
    made = []
    for _ in range(n):
        day = rng.choice(days)
        when = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(1, 86_399), microseconds=rng.randrange(10**6)
        )
        link_id = rng.choice(list(codes))
        one = click(
            when,
            link_id,
            publisher_id,
            f"s{rng.randrange(12)}",  # sessions come back
            af=rng.choice(AFS),
            cn=rng.choice([None, "spring"]),
            flags=int(rng.choice(FLAGS)) if rng.random() < 0.15 else 0,
            code=codes[link_id],
        )
        one.user_agent = rng.choice([ua for ua, _ in AGENTS.values()])
        one.ip = rng.choice(ADDRESSES)
        one.referer = rng.choice(list(REFERERS))
        one.accept_language = rng.choice(list(LANGUAGES))
        dims = resolved(one.user_agent, one.ip, one.referer, one.accept_language)
        made.append(Scripted(one, dims))
    # In time order, as the redirect sends them: the flusher's first click of a session is
    # then the earliest, the one the expected figures below count a unique click under.
    made.sort(key=lambda s: (s.click.ts_us, s.click.click_id))
    return made


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    prefix = f"cttest:{uuid.uuid4().hex[:12]}"
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    async with own_database() as url, own_pool(url) as pool:
        settings = Settings(
            redis_url=TEST_REDIS_URL,
            database_url=url,
            key_prefix=prefix,
            cookie_secure=False,
            cookie_secret="test-cookie-secret-test-cookie-secret",
            allowed_hosts=("shop.example.com",),
            flush_block_ms=20,
            flag_bots=False,
            duplicate_window_s=0,
            ip_clicks_per_minute=0,
            # One batch per flush: the earliest click of a session is then the one counted
            # unique. With several, two batches written at once may race for a session's row
            # (docs/reports.md, "Dimensions of old clicks"): the sums hold, which value a
            # unique click shows under may not; the property test below covers batches.
            flush_batch_size=1000,
        )
        app = create_app(settings)
        try:
            async with (
                LifespanManager(app) as manager,
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
                ) as client,
            ):
                async with pool.acquire() as conn:
                    publisher_id = await conn.fetchval(
                        "INSERT INTO publishers (name) VALUES ('Dimensions') RETURNING id"
                    )
                    _, key = await create_key(conn, Role.publisher, publisher_id)
                    codes = {}
                    for code in ("dimA", "dimB"):
                        made = await link_store.create_link(
                            conn, publisher_id, "https://shop.example.com/x", code=code
                        )
                        codes[made.id] = code
                found = World(client, pool, settings, url, key, publisher_id, codes)
                today = datetime.now(UTC).date()
                old = scripted_clicks(publisher_id, codes, [today - timedelta(days=6)], 60, 1)
                for one in old:
                    one.stored_without = True
                off = settings.model_copy(update={"dimensions": False})
                assert await flush(off, redis, pool, [s.click for s in old]) == len(old)
                days = [today - timedelta(days=n) for n in (1, 2, 3)]
                new = scripted_clicks(publisher_id, codes, days, 400, 2)
                assert await flush(settings, redis, pool, [s.click for s in new]) == len(new)
                found.clicks = old + new
                yield found
        finally:
            keys = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


# -- expected figures, from the script -------------------------------------------------------


def value_of(world: World, s: Scripted, name: str) -> object:
    c = s.click
    when = EPOCH + timedelta(microseconds=c.ts_us)
    if name == "day":
        return local_day(when, world.settings.period_tz).isoformat()
    if name == "link":
        return world.codes[c.link_id]
    if name in TRAFFIC_NAMES or name in VERSION_NAMES:
        if s.stored_without and not world.backfilled:
            return "unknown"
        return s.dims[name] or "unknown"
    found: object = getattr(c, name)
    return found


def firsts(world: World) -> set[str]:
    """The unique clicks' ids: each session's earliest billable click per (day, link, af,
    cn, cv)."""
    seen: set[tuple[object, ...]] = set()
    found = set()
    for s in sorted(world.clicks, key=lambda s: (s.click.ts_us, s.click.click_id)):
        c = s.click
        key = (value_of(world, s, "day"), c.link_id, c.af, c.cn, c.cv, c.session_id)
        if not c.flags and key not in seen:
            seen.add(key)
            found.add(c.click_id)
    return found


def expected(
    world: World, group_by: Sequence[str], **filters: str
) -> dict[tuple[object, ...], tuple[int, int, int]]:
    """(clicks, unique clicks, flagged) per group, over every scripted day."""
    unique = firsts(world)
    groups: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for s in world.clicks:
        if any(value_of(world, s, k) != v for k, v in filters.items()):
            continue
        counted = groups[tuple(value_of(world, s, d) for d in group_by)]
        counted[0] += 1
        counted[1] += s.click.click_id in unique
        counted[2] += bool(s.click.flags)
    return {k: (v[0], v[1], v[2]) for k, v in groups.items()}


def the_range(world: World) -> dict[str, str]:
    today = local_today(world.settings.period_tz)
    return {"from": str(today - timedelta(days=10)), "to": str(today)}


async def report(world: World, group_by: str, **params: str) -> dict[str, Any]:
    answer = await world.client.get(
        "/api/v1/reports/traffic",
        params={**the_range(world), "group_by": group_by, **params},
        headers=bearer(world.key),
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def rows_of(body: dict[str, Any], group_by: Sequence[str]) -> dict[tuple[object, ...], Any]:
    found = {}
    for row in body["rows"]:
        assert set(row) == {*group_by, "clicks", "billable_clicks", "unique_clicks", "flagged"
                            "_clicks"}  # fmt: skip
        assert row["billable_clicks"] == row["clicks"] - row["flagged_clicks"]
        key = tuple(row[d] for d in group_by)
        assert key not in found
        found[key] = (row["clicks"], row["unique_clicks"], row["flagged_clicks"])
    return found


def totals(body: dict[str, Any]) -> tuple[int, int, int, int]:
    t = body["totals"]
    return t["clicks"], t["billable_clicks"], t["unique_clicks"], t["flagged_clicks"]


# -- reports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TRAFFIC_NAMES)
async def test_each_dimension_matches_the_script_and_adds_up(world: World, name: str) -> None:
    body = await report(world, name)
    assert body["source"] == "rollups"
    found = rows_of(body, [name])
    assert found == expected(world, [name])
    assert ("unknown",) in found  # the old clicks, and more
    plain = await report(world, "")
    assert totals(body) == totals(plain)
    assert totals(plain)[0] == len(world.clicks)
    clicks, billable, unique, flagged = totals(plain)
    rows = body["rows"]
    assert sum(r["clicks"] for r in rows) == clicks
    assert sum(r["billable_clicks"] for r in rows) == billable
    assert sum(r["unique_clicks"] for r in rows) == unique
    assert sum(r["flagged_clicks"] for r in rows) == flagged


def test_the_device_types_are_those_the_flusher_stores() -> None:
    assert counts.DEVICES == get_args(DeviceType)


@pytest.mark.parametrize(
    ("group_by", "filters", "source"),
    [
        ("day,country", {}, "rollups"),
        ("link,device", {}, "rollups"),
        ("link,device", {"af": "blog"}, "clicks"),
        ("af,cn,browser", {}, "clicks"),
        ("day", {"country": "nl"}, "rollups"),
        ("country", {"country": "unknown"}, "rollups"),
        ("link", {"device": "Mobile", "link": "dimA"}, "rollups"),
        ("language", {"cn": "spring"}, "clicks"),
        ("referrer", {"referrer": "News.Example.com"}, "rollups"),
        ("country,device", {}, "clicks"),
        ("day,os,language", {"af": "news"}, "clicks"),
        ("browser", {"country": "BR"}, "clicks"),
        ("link", {"device": "bot", "os": "unknown"}, "clicks"),
    ],
)
async def test_combined_with_day_link_tracking_and_filters(
    world: World, group_by: str, filters: dict[str, str], source: str
) -> None:
    body = await report(world, group_by, **filters)
    assert body["source"] == source
    dims = group_by.split(",")
    normal = {
        "country": str.upper,
        "device": str.lower,
        "referrer": str.lower,
        "language": str.lower,
    }
    wanted = {k: normal.get(k, str)(v) if v != "unknown" else v for k, v in filters.items()}
    want = expected(world, dims, **wanted)
    assert want, "the case must select clicks"
    assert rows_of(body, dims) == want
    if not set(filters) & set(TRAFFIC_NAMES):  # each dimension adds up to the plain report
        plain = await report(world, "", **filters)
        assert totals(body) == totals(plain)


async def test_two_dimensions_from_raw_clicks_add_up_too(world: World) -> None:
    """Every pair: the raw-click path counts unique clicks as the rollups do."""
    plain = totals(await report(world, ""))
    for n, first in enumerate(TRAFFIC_NAMES):
        for second in TRAFFIC_NAMES[n + 1 :]:
            body = await report(world, f"{first},{second}")
            assert body["source"] == "clicks"
            assert totals(body) == plain, (first, second)
            assert rows_of(body, [first, second]) == expected(world, [first, second])


@pytest.mark.parametrize("name", VERSION_NAMES)
async def test_versions_come_from_raw_clicks_and_add_up(world: World, name: str) -> None:
    body = await report(world, name)
    assert body["source"] == "clicks"
    assert rows_of(body, [name]) == expected(world, [name])
    assert ("Chrome Mobile 131",) in rows_of(body, [name]) or ("iOS 18",) in rows_of(body, [name])
    assert totals(body) == totals(await report(world, ""))
    narrowed = await report(world, "day,country", **{name: "unknown"})
    assert narrowed["source"] == "clicks"
    assert rows_of(narrowed, ["day", "country"]) == expected(
        world, ["day", "country"], **{name: "unknown"}
    )


async def test_the_rollups_equal_a_recount(world: World) -> None:
    today = local_today(world.settings.period_tz)
    first = today - timedelta(days=10)
    async with world.pool.acquire() as conn:
        rolled = await recount.rollup_dimension_days(conn, first, today)
        assert rolled == await recount.recount_dimension_days(
            conn, first, today, world.settings.period_tz
        )
        per_link = await recount.rollup_link_days(conn, first, today)
    for name in TRAFFIC_NAMES:
        summed: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
        for (publisher, dimension, day, link, _), counted in rolled.items():
            if dimension == name:
                for n, count in enumerate(counted):
                    summed[publisher, day, link][n] += count
        assert {k: tuple(v) for k, v in summed.items()} == per_link, name


async def test_the_csv_has_the_dimension_columns(world: World) -> None:
    params = {**the_range(world), "group_by": "day,country"}
    headers = bearer(world.key)
    answer = await world.client.get("/api/v1/reports/traffic.csv", params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    table = list(csv.reader(io.StringIO(answer.content.decode("utf-8"))))
    zone = label(world.settings.period_tz)
    assert table[0] == [
        f"day_{zone}",
        "country",
        "clicks",
        "billable_clicks",
        "unique_clicks",
        "flagged_clicks",
    ]
    body = await report(world, "day,country")
    assert table[1:] == [
        [r["day"], r["country"], *(str(r[c]) for c in table[0][2:])] for r in body["rows"]
    ]
    assert any(cells[1] == "unknown" for cells in table[1:])


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"country": "DEU"}, "country: must be a country's two-letter code, like DE, or unknown"),
        ({"country": "1x"}, "country: must be a country's two-letter code"),
        ({"device": "phone"}, "device: must be one of desktop, mobile, tablet, bot, other"),
        # Values no click can have: refused, not answered with an empty report.
        ({"country": "XX"}, "country: XX stands for an unknown country, never a click's"),
        ({"country": "zz"}, "country: ZZ stands for an unknown country"),
        ({"language": "pt-BR"}, "language: must be a primary language subtag of 2 or 3 letters"),
        ({"language": "english"}, "language: must be a primary language subtag"),
        ({"referrer": "http://x.example.com/"}, "referrer: must be a host name"),
        ({"referrer": "x.example.com:443"}, "referrer: must be a host name"),
        ({"browser": "Chrome\x07"}, "browser: must not contain control or invisible characters"),
        ({"language": ""}, "language: must not be empty"),
        ({"referrer": "x" * 254}, "referrer: must be at most 253 characters"),
        ({"group_by": "city"}, "group_by: must be dimensions among day, link, af, cn, cv, dp, "),
        (
            {"group_by": "country,device", "from": "2026-01-01", "to": "2026-03-01"},
            "at most 31 (a report combining country and device counts raw clicks)",
        ),
        (
            {"group_by": "day", "country": "DE", "os": "iOS", "from": "2026-01-01"},
            "counts raw clicks",
        ),
        (
            {"group_by": "os_version", "from": "2026-01-01"},
            "at most 31 (a report by os_version counts raw clicks)",
        ),
        ({"browser_version": "Chrome\u200b 131"}, "browser_version: must not contain control"),
    ],
)
async def test_bad_values_are_refused_in_words(
    world: World, params: dict[str, str], problem: str
) -> None:
    if "from" in params and "to" not in params:
        params = {**params, "to": "2026-03-01"}
    answer = await world.client.get(
        "/api/v1/reports/traffic", params=params, headers=bearer(world.key)
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid"
    assert problem in answer.json()["message"]


async def test_a_year_by_one_dimension_reads_the_rollups(world: World) -> None:
    today = local_today(world.settings.period_tz)
    params = {"from": str(today - timedelta(days=365)), "to": str(today)}
    body = await report(world, "country", **params)
    assert body["source"] == "rollups"
    assert body["totals"]["clicks"] == len(world.clicks)


# -- the sums, for any clicks: a property of the counting statement --------------------------


_SOURCE = f"""INSERT INTO clicks (click_id, ts, link_id, code, publisher_id, af, session_id,
        session_new, method, flags, country, device, browser, os, referrer_host, language)
    SELECT click_id, ts, link_id, 'p', publisher_id, af, session_id, false, 'GET', flags,
           country, device, browser, os, referrer_host, language
    FROM unnest($2::uuid[], $3::timestamptz[], $4::bigint[], $5::bigint[], $6::text[],
                $7::text[], $8::smallint[], $9::text[], $10::text[], $11::text[], $12::text[],
                $13::text[], $14::text[])
        AS u(click_id, ts, link_id, publisher_id, af, session_id, flags, country, device,
             browser, os, referrer_host, language)
    ON CONFLICT DO NOTHING RETURNING {rollups.SOURCE_COLUMNS}"""
_COUNT = rollups.counting(_SOURCE)
PROPERTY_PUBLISHER = 10**12  # no other test's publisher
PROPERTY_DAY = date(2025, 3, 30)  # a daylight-saving change in Europe, whatever the zone
_values = {
    "country": st.sampled_from([None, "DE", "NL"]),
    "device": st.sampled_from([None, "mobile", "desktop"]),
    "browser": st.sampled_from([None, "Chrome", "Firefox"]),
    "os": st.sampled_from([None, "iOS"]),
    "referrer_host": st.sampled_from([None, "a.example.com"]),
    "language": st.sampled_from([None, "de", "pt"]),
}
_a_click = st.fixed_dictionaries(
    {
        "minute": st.integers(0, 48 * 60 - 1),
        "link": st.integers(1, 2),
        "af": st.sampled_from([None, "x"]),
        "session": st.integers(0, 4),
        "flags": st.sampled_from([0, 0, 0, int(Flag.bot)]),
        **_values,
    }
)


def _batch_columns(batch: list[dict[str, Any]]) -> list[list[Any]]:
    start = datetime(PROPERTY_DAY.year, PROPERTY_DAY.month, PROPERTY_DAY.day, tzinfo=UTC)
    rows = [
        (
            uuid.uuid4(),
            start + timedelta(minutes=c["minute"]),
            c["link"],
            PROPERTY_PUBLISHER,
            c["af"],
            f"s{c['session']}",
            c["flags"],
            *(c[k] for k in _values),
        )
        for c in batch
    ]
    return [list(column) for column in zip(*rows, strict=True)]


@given(clicks=st.lists(_a_click, min_size=1, max_size=40), cuts=st.lists(st.integers(0, 40)))
@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
async def test_every_dimension_adds_up_to_the_plain_report(
    world: World, clicks: list[dict[str, Any]], cuts: list[int]
) -> None:
    """Any clicks, written in any batches (a session's later batch finds its row taken):
    by each dimension, alone (rollups) or by two (raw clicks), the totals are the plain
    report's; nothing is kept (the transaction is rolled back)."""
    tz = world.settings.period_tz
    bounds = sorted({0, len(clicks), *(c for c in cuts if c < len(clicks))})
    days = (PROPERTY_DAY - timedelta(days=1), PROPERTY_DAY + timedelta(days=2))
    async with world.pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            for low, high in itertools.pairwise(bounds):
                batch = _batch_columns(clicks[low:high])
                await conn.fetchval(_COUNT, zone_name(tz), *batch)
            await rollups.fold(conn)  # the per-dimension counts wait for it

            async def report_totals(*group_by: Dimension) -> counts.TrafficRow:
                query = TrafficQuery(PROPERTY_PUBLISHER, *days, tz, group_by=group_by)
                return counts.totals(await counts.traffic_report(conn, query))

            plain = await report_totals()
            assert plain.clicks == len(clicks)
            for n, one in enumerate(TRAFFIC):
                assert await report_totals(Dimension.day, Dimension.af, one) == plain, one
                other = TRAFFIC[(n + 1) % len(TRAFFIC)]
                assert await report_totals(one, other) == plain, (one, other)
        finally:
            await transaction.rollback()


# -- last: the backfill fills the old clicks and recounts their days ---------------------------


async def test_backfill_dimensions_fills_the_old_clicks_and_recounts(world: World) -> None:
    before = {name: totals(await report(world, name)) for name in TRAFFIC_NAMES}
    result = run_cli(world.database_url, "backfill-dimensions", "--batch", "25")
    assert result.returncode == 0, result.stderr
    assert "filled the dimensions of 60 clicks" in result.stdout
    assert "recounted the traffic rollups of" in result.stdout
    world.backfilled = True
    plain = totals(await report(world, ""))
    for name in TRAFFIC_NAMES:
        body = await report(world, name)
        assert rows_of(body, [name]) == expected(world, [name]), name
        assert totals(body) == before[name] == plain
    old_day = min(str(value_of(world, s, "day")) for s in world.clicks)
    by_day = rows_of(await report(world, "day,device"), ["day", "device"])
    assert not [key for key in by_day if key[0] == old_day and key[1] == "unknown"]
    await test_the_rollups_equal_a_recount(world)
