"""Traffic quality end to end: a scripted mix of visitors through the app and a running
flusher gives exactly the expected flags and billable counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from app.clicks.record import Flag
from app.core.db import Pool
from app.flusher.loop import Flusher
from app.links import model as link_model
from app.links import store as link_store
from app.main import create_app
from app.settings import IpMode, Settings
from app.traffic.recount import traffic_by_day_and_link
from tests.conftest import TEST_REDIS_URL

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0"


@asynccontextmanager
async def running(settings: Settings, pool: Pool) -> AsyncIterator[ASGIApp]:
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    stop = asyncio.Event()
    flusher = asyncio.create_task(Flusher(settings, redis, pool, consumer="q").run(stop))
    try:
        async with LifespanManager(create_app(settings)) as manager:
            yield manager.app
    finally:
        stop.set()
        await flusher
        await redis.aclose()


def visitor(app: ASGIApp, ip: str) -> httpx.AsyncClient:
    """A browser of its own: its own address and cookie jar."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def click(client: httpx.AsyncClient, code: str, method: str = "GET", **headers: str) -> str:
    response = await client.request(method, f"/e/{code}", headers=headers)
    assert response.status_code == 302  # whatever the flags
    return parse_qs(urlsplit(response.headers["location"]).query)["aff_click_id"][0]


async def flags_when_stored(pool: Pool, click_ids: list[str]) -> dict[str, Flag]:
    for _ in range(300):
        rows = await pool.fetch(
            "SELECT click_id::text AS id, flags FROM clicks WHERE click_id::text = ANY($1)",
            click_ids,
        )
        if len(rows) == len(click_ids):
            return {r["id"]: Flag(r["flags"]) for r in rows}
        await asyncio.sleep(0.1)
    raise AssertionError("the flusher did not store every click")


@pytest.fixture
async def link(pool: Pool) -> link_model.Link:
    async with pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('Q') RETURNING id"
        )
        return await link_store.create_link(conn, publisher_id, "https://example.com/q")


async def test_a_scripted_mix_gets_exactly_the_expected_flags(
    settings: Settings, pool: Pool, link: link_model.Link
) -> None:
    settings = settings.model_copy(update={"duplicate_window_s": 30, "ip_clicks_per_minute": 20})
    code = link.code
    expected: dict[str, Flag] = {}
    async with running(settings, pool) as app:
        for n, agent in enumerate([CHROME, FIREFOX, CHROME, FIREFOX, CHROME]):
            async with visitor(app, f"198.51.100.{n + 1}") as browser:
                expected[await click(browser, code, **{"user-agent": agent})] = Flag(0)
        robots = {
            "10.0.0.1": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "10.0.0.2": "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "10.0.0.3": "curl/8.5.0",
            "10.0.0.4": "python-requests/2.32.3",
            "10.0.0.5": "",
        }
        for ip, agent in robots.items():
            async with visitor(app, ip) as robot:
                expected[await click(robot, code, **{"user-agent": agent})] = Flag.bot
        async with visitor(app, "10.1.0.1") as framed:
            headers = {"user-agent": CHROME, "sec-fetch-dest": "iframe"}
            expected[await click(framed, code, **headers)] = Flag.iframe
        async with visitor(app, "10.1.0.2") as prefetcher:
            headers = {"user-agent": CHROME, "sec-purpose": "prefetch"}
            expected[await click(prefetcher, code, **headers)] = Flag.prefetch
        async with visitor(app, "10.1.0.3") as checker:
            expected[await click(checker, code, "HEAD", **{"user-agent": CHROME})] = Flag.head

        async with visitor(app, "10.2.0.1") as refresher:  # one session, 20 refreshes
            for n in range(20):
                flag = Flag(0) if n == 0 else Flag.duplicate
                expected[await click(refresher, code, **{"user-agent": FIREFOX})] = flag

        for n in range(30):  # one address, a new session every time
            async with visitor(app, "10.3.0.1") as hammer:
                flag = Flag(0) if n < 20 else Flag.duplicate
                expected[await click(hammer, code, **{"user-agent": CHROME})] = flag

        stored = await flags_when_stored(pool, list(expected))
    assert stored == expected

    today = datetime.now(UTC).date()
    # Other tests may have written clicks under the same publisher id: this link's row only.
    [row] = [
        r
        for r in await traffic_by_day_and_link(pool, link.publisher_id, today, today, UTC)  # type: ignore[arg-type]
        if r.link_id == link.id
    ]
    assert row.clicks == len(expected) == 5 + 5 + 3 + 20 + 30
    assert row.billable == 5 + 1 + 20
    assert row.unique == 5 + 1 + 20  # distinct sessions among billable clicks
    assert row.flagged == 5 + 3 + 19 + 10


async def test_unique_clicks_count_sessions_not_requests(pool: Pool, link: link_model.Link) -> None:
    """A returning visitor clicking again after the window is billable twice, unique once."""
    day = date(2026, 3, 10)
    await pool.execute("SELECT ensure_click_partition($1)", day)
    rows = [
        ("01000000-0000-7000-8000-000000000001", "10:00", "s1", 0),
        ("01000000-0000-7000-8000-000000000002", "11:00", "s1", 0),
        ("01000000-0000-7000-8000-000000000003", "11:00", "s2", 0),
        ("01000000-0000-7000-8000-000000000004", "11:00", "s3", int(Flag.bot)),
    ]
    for click_id, time, session, flags in rows:
        await pool.execute(
            """INSERT INTO clicks (click_id, ts, link_id, code, publisher_id, session_id,
                                   session_new, method, flags)
               VALUES ($1, $2, $3, $4, $5, $6, true, 'GET', $7)""",
            click_id,
            datetime.fromisoformat(f"{day}T{time}:00+00:00"),
            link.id,
            link.code,
            link.publisher_id,
            session,
            flags,
        )
    [row] = [
        r
        for r in await traffic_by_day_and_link(pool, link.publisher_id, day, day, UTC)  # type: ignore[arg-type]
        if r.link_id == link.id
    ]
    assert (row.clicks, row.billable, row.unique, row.flagged) == (4, 3, 2, 1)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (IpMode.full, "203.0.113.77"),
        (IpMode.truncate, "203.0.113.0"),
    ],
)
async def test_client_ip_is_stored_as_configured(
    settings: Settings, pool: Pool, link: link_model.Link, mode: IpMode, expected: str
) -> None:
    settings = settings.model_copy(update={"ip_mode": mode})
    async with running(settings, pool) as app, visitor(app, "203.0.113.77") as browser:
        click_id = await click(browser, link.code, **{"user-agent": CHROME})
        await flags_when_stored(pool, [click_id])
    assert await pool.fetchval("SELECT ip FROM clicks WHERE click_id = $1", click_id) == expected


async def test_hashed_ips_are_keyed_and_stable(
    settings: Settings, pool: Pool, link: link_model.Link
) -> None:
    settings = settings.model_copy(update={"ip_mode": IpMode.hash})
    async with running(settings, pool) as app:
        ids = []
        for _ in range(2):
            async with visitor(app, "2001:db8::5") as browser:
                ids.append(await click(browser, link.code, **{"user-agent": CHROME}))
        await flags_when_stored(pool, ids)
    hashes = await pool.fetch("SELECT ip FROM clicks WHERE click_id = ANY($1::uuid[])", ids)
    assert len({r["ip"] for r in hashes}) == 1
    assert "2001" not in hashes[0]["ip"] and len(hashes[0]["ip"]) == 32


async def test_flags_can_be_switched_off(
    settings: Settings, pool: Pool, link: link_model.Link
) -> None:
    settings = settings.model_copy(
        update={
            "flag_bots": False,
            "flag_head": False,
            "duplicate_window_s": 0,
            "ip_clicks_per_minute": 0,
        }
    )
    async with running(settings, pool) as app, visitor(app, "192.0.2.9") as robot:
        ids = [await click(robot, link.code, "HEAD", **{"user-agent": "curl/8"}) for _ in range(3)]
        stored = await flags_when_stored(pool, ids)
    assert set(stored.values()) == {Flag(0)}


async def test_extra_bot_patterns_from_a_file(
    settings: Settings, pool: Pool, link: link_model.Link, tmp_path: Path
) -> None:
    patterns = tmp_path / "bots.json"
    patterns.write_text('["ExampleInternalMonitor", {"pattern": "acme-checker/"}]')
    settings = settings.model_copy(update={"bot_patterns_file": patterns})
    async with running(settings, pool) as app:
        ids = []
        for n, agent in enumerate(["ExampleInternalMonitor/1.0", "acme-checker/2", CHROME]):
            async with visitor(app, f"192.0.2.{20 + n}") as client:
                ids.append(await click(client, link.code, **{"user-agent": agent}))
        stored = await flags_when_stored(pool, ids)
    assert [stored[i] for i in ids] == [Flag.bot, Flag.bot, Flag(0)]


async def test_retention_drops_old_partitions_only(pool: Pool) -> None:
    old, recent = date(2020, 1, 5), date(2020, 1, 20)
    for day in (old, recent):
        await pool.execute("SELECT ensure_click_partition($1)", day)
    dropped = await pool.fetchval(
        "SELECT drop_click_partitions_before($1::date)", date(2020, 1, 10)
    )
    assert dropped >= 1
    assert await pool.fetchval("SELECT to_regclass('clicks_20200105')") is None
    assert await pool.fetchval("SELECT to_regclass('clicks_20200120')") is not None


async def test_link_preview_fetchers_of_social_apps_are_flagged_bots(
    settings: Settings, pool: Pool, link: link_model.Link
) -> None:
    """A shared link is fetched by the app to draw its card: no visitor, flagged ``bot``."""
    fetchers = [
        "Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)",  # ours
        "Mastodon/4.3.2 (http.rb/5.2.0; +https://mastodon.social/) Bot",  # the package's
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like "
        "Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        "Misskey/2024.10.1 (https://misskey.io)",  # ours
    ]
    async with running(settings, pool) as app:
        ids = []
        for n, agent in enumerate([*fetchers, CHROME]):
            async with visitor(app, f"192.0.2.{40 + n}") as client:
                ids.append(await click(client, link.code, **{"user-agent": agent}))
        stored = await flags_when_stored(pool, ids)
    assert [stored[i] for i in ids] == [Flag.bot] * len(fetchers) + [Flag(0)]
