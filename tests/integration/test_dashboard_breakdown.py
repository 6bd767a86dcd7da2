"""The dashboard's Traffic page (``/dashboard/traffic``) over HTTP in-process: its table
agrees with the API's traffic report for the same data, dimension by dimension and filter by
filter, its totals with the plain report's; "unknown" reads "Unknown"; a bad value answers
the 400 page; a hostile referrer host is escaped everywhere it is shown; its CSV link gives
the same breakdown. (tests/integration/test_dashboard_breakdown_browser.py reads it in
Chromium.)

The clicks are stored straight into Postgres with their dimension columns set, then counted
into the rollups by ``app.traffic.rollups.backfill_day`` (the supported rebuild path), on a
database of this module's own: a backfill recounts whole days, whoever's clicks they hold."""

from __future__ import annotations

import csv
import html
import io
import re
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.accounts.apikeys import Role, create_key
from app.core.db import Conn
from app.dashboard.countries import country_name, names
from app.links import store as link_store
from app.settings import Settings
from app.traffic.days import day_of
from app.traffic.rollups import backfill_day
from tests.integration.test_dashboard import sign_in
from tests.support.accounts import app_on
from tests.support.orders import uuid7_at
from tests.support.reports import own_database, own_pool

HOSTILE = '"><script>alert(1)</script>.example.com'


@dataclass(frozen=True)
class Planned:
    """A click as stored: its dimensions (None: unknown), tracking id and flags."""

    country: str | None
    device: str | None
    browser: str | None
    os: str | None
    referrer_host: str | None
    language: str | None
    af: str | None = None
    flags: int = 0
    session: str = ""


# Two sessions click twice (one unique click each); a flagged click is never unique.
PLAN = [
    Planned("DE", "mobile", "Chrome Mobile", "Android", "news.example.com", "de", "blog"),
    Planned("DE", "mobile", "Chrome Mobile", "Android", "news.example.com", "de", "blog", 0, "s1"),
    Planned("DE", "mobile", "Chrome Mobile", "Android", "news.example.com", "de", "blog", 0, "s1"),
    Planned("DE", "desktop", "Firefox", "Windows", None, "de", "blog"),
    Planned("DE", "desktop", "Firefox", "Windows", None, "en", None, 1),
    Planned("BR", "mobile", "Mobile Safari", "iOS", "search.example.net", "pt", "video"),
    Planned("BR", "tablet", "Mobile Safari", "iOS", "search.example.net", "pt", "video"),
    Planned("BR", "mobile", "Chrome Mobile", "Android", HOSTILE, "pt", "video", 0, "s2"),
    Planned("BR", "mobile", "Chrome Mobile", "Android", HOSTILE, "pt", "video", 0, "s2"),
    Planned("US", "bot", "Googlebot", "Other", None, "en", None, 1),
    Planned("US", "desktop", "Chrome", "Mac OS X", "news.example.com", "en", "blog"),
    Planned(None, None, None, None, None, None, "blog"),  # stored before dimensions
    Planned(None, None, None, None, None, None, None),
]
DAYS_BACK = (3, 2, 1)  # each planned click is stored on each of these days


@dataclass(frozen=True)
class World:
    url: str
    key: str
    publisher_id: int
    code: str
    first: date  # the days holding the clicks, in the period time zone
    last: date


async def store_click(conn: Conn, link: Any, when: datetime, plan: Planned, n: int) -> None:
    await conn.execute(
        """INSERT INTO clicks (click_id, ts, link_id, code, publisher_id, af, session_id,
               session_new, method, flags, country, device, browser, os, referrer_host,
               language)
           VALUES ($1, $2, $3, $4, $5, $6, $7, true, 'GET', $8, $9, $10, $11, $12, $13, $14)""",
        uuid7_at(when),
        when,
        link.id,
        link.code,
        link.publisher_id,
        plan.af,
        plan.session or f"v{n}",
        plan.flags,
        plan.country,
        plan.device,
        plan.browser,
        plan.os,
        plan.referrer_host,
        plan.language,
    )


@pytest.fixture(scope="module")
async def world() -> AsyncIterator[World]:
    tz = Settings().period_tz
    async with own_database() as url, own_pool(url) as pool, pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('Breakdown Blog') RETURNING id"
        )
        _, key = await create_key(conn, Role.publisher, publisher_id)
        link = await link_store.create_link(conn, publisher_id, "https://shop.example.com/b")
        today = day_of(datetime.now(UTC), tz)
        days = []
        for back in DAYS_BACK:
            day = today - timedelta(days=back)
            noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
            for n, plan in enumerate(PLAN):
                await store_click(conn, link, noon + timedelta(seconds=n), plan, n + 100 * back)
            days.append(day)
        for day in days:
            await backfill_day(conn, day, tz)
        yield World(url, key, publisher_id, link.code, min(days), max(days))


@pytest.fixture
async def client(settings: Settings, world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with app_on(settings.model_copy(update={"database_url": world.url})) as client:
        yield client


ROW = re.compile(r'<tr class="(value|other|total)" data-value="([^"]*)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)


@dataclass(frozen=True)
class Shown:
    kind: str
    value: str
    label: str
    counts: tuple[int, int, int, int]  # clicks, billable, unique, flagged
    share: str


def table_rows(page: httpx.Response) -> list[Shown]:
    assert page.status_code == 200, page.text[:500]
    found = []
    for kind, value, row in ROW.findall(page.text):
        cells = [html.unescape(c) for c in CELL.findall(row)]
        clicks, billable, unique, flagged = (int(c.replace(",", "")) for c in cells[1:5])
        counts = (clicks, billable, unique, flagged)
        found.append(Shown(kind, html.unescape(value), cells[0], counts, cells[5]))
    return found


def span(world: World) -> dict[str, str]:
    return {"from": world.first.isoformat(), "to": world.last.isoformat()}


async def api_report(
    client: httpx.AsyncClient, world: World, group_by: str, **filters: str
) -> dict[str, Any]:
    answer = await client.get(
        "/api/v1/reports/traffic",
        params={**span(world), "group_by": group_by, **filters},
        headers={"Authorization": f"Bearer {world.key}"},
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def counts_of(row: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        row["clicks"],
        row["billable_clicks"],
        row["unique_clicks"],
        row["flagged_clicks"],
    )


async def agrees_with_the_api(
    client: httpx.AsyncClient, world: World, by: str, **filters: str
) -> list[Shown]:
    """The page by ``by`` under ``filters``: each value's counts as the API's report has
    them, most clicks first, the totals its totals and the plain report's."""
    page = await client.get("/dashboard/traffic", params={**span(world), "by": by, **filters})
    shown = table_rows(page)
    report = await api_report(client, world, by, **filters)
    values = [s for s in shown if s.kind == "value"]
    expected = {str(r[by]) if r[by] is not None else "": counts_of(r) for r in report["rows"]}
    assert {s.value: s.counts for s in values} == expected, by
    assert [s.counts[0] for s in values] == sorted((s.counts[0] for s in values), reverse=True)
    [total] = [s for s in shown if s.kind == "total"]
    assert total.counts == counts_of(report["totals"])
    plain = await api_report(client, world, "", **filters)
    assert total.counts == counts_of(plain["totals"])
    assert total.share == "100.00 %"
    for s in values:
        assert s.share == f"{s.counts[0] / total.counts[0] * 100:.2f} %"
    return shown


@pytest.mark.parametrize(
    "by", ["country", "device", "browser", "os", "referrer", "language", "day", "link", "af"]
)
async def test_each_dimension_agrees_with_the_api_report(
    client: httpx.AsyncClient, world: World, by: str
) -> None:
    await sign_in(client, world.key)
    shown = await agrees_with_the_api(client, world, by)
    if by in ("country", "device", "browser", "os", "referrer", "language"):
        [unknown] = [s for s in shown if s.value == "unknown"]
        assert unknown.label == "Unknown"
        column = "referrer_host" if by == "referrer" else by
        stored_without = sum(1 for p in PLAN if getattr(p, column) is None)
        assert unknown.counts[0] == stored_without * len(DAYS_BACK)


async def test_counts_by_country_as_planned(client: httpx.AsyncClient, world: World) -> None:
    """Worked out from the plan, not by the code under test: clicks and flagged per country,
    the country's English name where the time zone database has it, one bar per value."""
    await sign_in(client, world.key)
    page = await client.get("/dashboard/traffic", params={**span(world), "by": "country"})
    shown = {s.value: s for s in table_rows(page)}
    clicks = Counter(p.country or "unknown" for p in PLAN)
    flagged = Counter(p.country or "unknown" for p in PLAN if p.flags)
    for value, count in clicks.items():
        assert shown[value].counts[0] == count * len(DAYS_BACK)
        assert shown[value].counts[3] == flagged[value] * len(DAYS_BACK)
    # Two clicks of each session s1 and s2 on each day: one unique click.
    assert shown["DE"].counts[2] == 3 * len(DAYS_BACK)
    assert shown["DE"].label == country_name("DE")
    if names():
        assert shown["DE"].label == "Germany (DE)"
    bars = re.findall(r'<g class="hbar" data-label="([^"]*)" data-value="([^"]*)"', page.text)
    assert {v for _, v in bars} == set(clicks)
    assert 'href="/dashboard/traffic" aria-current="page"' in page.text  # in the navigation


async def test_filters_narrow_as_the_api_does(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.key)
    by_device = await agrees_with_the_api(client, world, "device", country="DE")
    assert {s.value for s in by_device if s.kind == "value"} == {"mobile", "desktop"}
    await agrees_with_the_api(client, world, "country", device="mobile")
    await agrees_with_the_api(client, world, "country", af="blog")
    await agrees_with_the_api(client, world, "browser", referrer="news.example.com")
    unknown = await agrees_with_the_api(client, world, "device", country="unknown")
    assert [s.value for s in unknown if s.kind == "value"] == ["unknown"]
    # A country code in lower case is the upper-case one; the page says what it keeps.
    page = await client.get(
        "/dashboard/traffic", params={**span(world), "by": "os", "country": "de"}
    )
    assert "Only clicks with country DE." in page.text
    assert {s.value for s in table_rows(page) if s.kind == "value"} == {"Android", "Windows"}
    empty = await client.get(
        "/dashboard/traffic", params={**span(world), "by": "os", "country": "FR"}
    )
    assert empty.status_code == 200
    assert "No clicks in this range with these filters." in empty.text
    assert 'id="breakdown-chart"' not in empty.text


async def test_a_range_without_clicks_says_so(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.key)
    page = await client.get("/dashboard/traffic", params={"from": "2026-01-01", "to": "2026-01-02"})
    assert page.status_code == 200
    assert '<p class="empty" id="breakdown-empty">No clicks in this range.</p>' in page.text
    assert 'id="breakdown-chart"' not in page.text
    assert "Traffic by country" in page.text  # by country unless asked otherwise


async def test_a_hostile_referrer_is_escaped(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.key)
    page = await client.get("/dashboard/traffic", params={**span(world), "by": "referrer"})
    assert "<script>" not in page.text
    escaped = html.escape(HOSTILE, quote=True)
    assert f'data-value="{escaped}"' in page.text  # the table's row and the chart's bar
    assert f'<td data-label="Referrer">{html.escape(HOSTILE)}</td>' in page.text
    assert f"<title>{html.escape(HOSTILE)}: 6 clicks" in page.text
    [row] = [s for s in table_rows(page) if s.value == HOSTILE]
    assert row.counts == (2 * len(DAYS_BACK), 2 * len(DAYS_BACK), len(DAYS_BACK), 0)
    # As a referrer filter it is no host name: refused, and not echoed raw.
    refused = await client.get(
        "/dashboard/traffic", params={**span(world), "by": "country", "referrer": HOSTILE}
    )
    assert refused.status_code == 400
    assert "<script>" not in refused.text
    # As a tracking string (any printable text) it comes back in the form, escaped.
    filtered = await client.get(
        "/dashboard/traffic", params={**span(world), "by": "country", "af": HOSTILE}
    )
    assert filtered.status_code == 200
    assert "<script>" not in filtered.text
    assert f'value="{escaped}"' in filtered.text


BAD = [
    ({"by": "week"}, "by: &#x27;week&#x27; is not one of country, device"),
    ({"by": "<b>x</b>"}, "by: &#x27;&lt;b&gt;x&lt;/b&gt;&#x27; is not one of"),
    ({"from": "2026-01-10", "to": "2026-01-01"}, "after the last day"),
    ({"from": "2025-01-01", "to": "2026-12-01"}, "a range is at most 366 days"),
    ({"to": "2026-02-30"}, "to: expected a day"),
    ({"country": "Germany"}, "country: must be a country&#x27;s two-letter code, like DE"),
    ({"device": "phone"}, "device: must be one of desktop, mobile"),
    # Values no click can have, refused as the API refuses them (not an empty page).
    ({"country": "XX"}, "country: XX stands for an unknown country"),
    ({"language": "pt-BR"}, "language: must be a primary language subtag of 2 or 3 letters"),
    ({"language": "english"}, "language: must be a primary language subtag"),
    ({"referrer": "http://x.example.com/"}, "referrer: must be a host name"),
    ({"link": "<b>"}, "link: a link code is 1 to 32 letters and digits"),
    ({"af": "x" * 129}, "af: is longer than 128 characters"),
    ({"referrer": "a\u202eb"}, "referrer: holds a control or invisible character"),
    ({"cv": "\x00"}, "cv: holds a control or invisible character"),
    # Two traffic dimensions count raw clicks: at most 31 days.
    (
        {"by": "country", "device": "mobile", "from": "2026-01-01", "to": "2026-03-01"},
        "from: the range covers 60 days; at most 31",
    ),
]


async def test_filters_are_read_in_any_case_as_the_api_reads_them(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.key)
    for params in ({"device": "Mobile"}, {"country": "br"}, {"language": "PT"}):
        answer = await client.get("/dashboard/traffic", params={**span(world), **params})
        assert answer.status_code == 200, (params, answer.text[-300:])


@pytest.mark.parametrize(("params", "message"), BAD)
async def test_bad_input_answers_the_400_page(
    client: httpx.AsyncClient, world: World, params: dict[str, str], message: str
) -> None:
    assert (await client.get("/dashboard/traffic", params=params)).status_code == 303
    await sign_in(client, world.key)
    answer = await client.get("/dashboard/traffic", params=params)
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert message in answer.text, answer.text[-600:]
    assert "<b>" not in answer.text


async def test_a_filter_given_twice_is_refused(client: httpx.AsyncClient, world: World) -> None:
    await sign_in(client, world.key)
    answer = await client.get("/dashboard/traffic?country=DE&country=BR")
    assert answer.status_code == 400 and "given twice" in answer.text


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


async def test_the_csv_link_gives_the_same_breakdown(
    client: httpx.AsyncClient, world: World
) -> None:
    await sign_in(client, world.key)
    asked = {**span(world), "by": "device", "country": "BR"}
    page = await client.get("/dashboard/traffic", params=asked)
    found = re.search(r'id="download-breakdown" href="([^"]+)"', page.text)
    assert found is not None
    href = html.unescape(found.group(1))
    assert href.startswith("/dashboard/export/traffic.csv?")
    for part in ("group_by=device", "country=BR", f"from={world.first}", "bom=true"):
        assert part in href
    export = await client.get(href)
    assert export.status_code == 200
    assert export.headers["content-type"].startswith("text/csv")
    rows = csv_rows(export.text)
    shown = {s.value: s.counts for s in table_rows(page) if s.kind == "value"}
    assert {
        r["device"]: (
            int(r["clicks"]),
            int(r["billable_clicks"]),
            int(r["unique_clicks"]),
            int(r["flagged_clicks"]),
        )
        for r in rows
    } == shown
    # The download's own filters are checked as the page's are.
    bad = await client.get("/dashboard/export/traffic.csv", params={"device": "phone"})
    assert bad.status_code == 400 and "device: must be one of" in bad.text


def test_country_names_come_from_the_time_zone_database() -> None:
    """``iso3166.tab`` where the zones are; the code alone for a code it does not name."""
    if names():
        assert country_name("BR") == "Brazil (BR)"
    assert country_name("QZ") == "QZ"
