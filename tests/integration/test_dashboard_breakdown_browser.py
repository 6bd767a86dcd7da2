"""The Traffic page in Debian's Chromium, headless, driven by Playwright, against a real
``python -m app.serve`` (as tests/integration/test_dashboard_browser.py runs it): clicks with
real user agents, addresses of known countries, referers and languages go through the real
flusher, which resolves their dimensions and counts them into the rollups. The publisher
signs in, opens the breakdown by country from the navigation, then by device with the
picker, then filtered; the bar chart's ``data-*`` values and the table agree with what was
clicked. On a 390 px phone the page fits without sideways scrolling. Screenshots:
test-artifacts/breakdown-desktop.png and breakdown-phone.png."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.accounts.apikeys import Role, create_key
from app.links import store as link_store
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_dashboard_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE_HEIGHT,
    PHONE_WIDTH,
    browser_or_skip,
    fits_the_phone,
    free_port,
    in_view,
    start_server,
    wait_until_up,
)
from tests.support.reports import click, flush, own_database, own_pool
from tests.unit.test_dimensions_agent import CASES
from tests.unit.test_dimensions_country import STABLE

# (agent, address or None: no address, so no country); a cycle of these makes the clicks.
VISITS = [
    ("iPhone Safari", "193.0.6.139"),
    ("Pixel Chrome", "200.160.2.3"),
    ("Pixel Chrome", "200.160.2.3"),
    ("Windows Chrome", "81.2.69.142"),
    ("iPad Safari", "202.12.29.1"),
    ("Pixel Chrome", "8.8.8.8"),
    ("iPhone Safari", "200.160.2.3"),
    ("iPad Safari", "200.160.2.3"),
    ("Windows Chrome", None),
    ("Googlebot", "8.8.8.8"),
]
REFERERS = ["https://news.example.com/story", "https://search.example.net/?q=x", None]
LANGUAGES = ["pt-BR,pt;q=0.9", "en-GB,en;q=0.8", None]
CLICKS = 75


@dataclass
class Site:
    base_url: str
    key: str
    countries: Counter[str] = field(default_factory=Counter)  # code or "unknown" -> clicks
    devices: Counter[str] = field(default_factory=Counter)
    brazil_devices: Counter[str] = field(default_factory=Counter)


async def populate(site: Site, settings: Settings, url: str, publisher_id: int) -> None:
    """``CLICKS`` clicks over the last two days through the stream and the flusher."""
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    async with own_pool(url) as pool:
        try:
            async with pool.acquire() as conn:
                link = await link_store.create_link(
                    conn, publisher_id, "https://shop.example.com/t"
                )
            now = datetime.now(UTC)
            made = []
            plan = zip(
                range(CLICKS),
                itertools.cycle(VISITS),
                itertools.cycle(REFERERS),
                itertools.cycle(LANGUAGES),
                strict=False,
            )
            for n, (agent, address), referer, language in plan:
                one = click(
                    now - timedelta(minutes=37 * n), link.id, publisher_id, f"v{n}", code=link.code
                )
                one.user_agent, one.ip = CASES[agent][0], address
                one.referer, one.accept_language = referer, language
                made.append(one)
                country = STABLE[address] if address else "unknown"
                device = CASES[agent][1].device or "unknown"
                site.countries[country] += 1
                site.devices[device] += 1
                if country == "BR":
                    site.brazil_devices[device] += 1
            assert await flush(settings, redis, pool, made) == CLICKS
        finally:
            await redis.aclose()


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    browser_or_skip()
    prefix = f"cttest:{uuid.uuid4().hex[:12]}"
    port = free_port()
    folder = tmp_path_factory.mktemp("breakdown")
    log = folder / "server.log"
    async with own_database() as url:
        settings = Settings(
            redis_url=TEST_REDIS_URL,
            database_url=url,
            key_prefix=prefix,
            cookie_secure=False,
            flush_block_ms=20,
            flag_bots=False,
            duplicate_window_s=0,
            ip_clicks_per_minute=0,
        )
        async with own_pool(url) as pool, pool.acquire() as conn:
            publisher_id = await conn.fetchval(
                "INSERT INTO publishers (name) VALUES ('Example Travel Blog') RETURNING id"
            )
            _, key = await create_key(conn, Role.publisher, publisher_id)
        env = {
            **os.environ,
            "CLICKTRACK_DATABASE_URL": url,
            "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
            "CLICKTRACK_KEY_PREFIX": prefix,
            "CLICKTRACK_PORT": str(port),
            "CLICKTRACK_HOST": "127.0.0.1",
            "CLICKTRACK_COOKIE_SECURE": "false",
            "CLICKTRACK_SPOOL_DIR": str(folder / "spool"),
            "CLICKTRACK_ALLOWED_HOSTS": "shop.example.com",
        }
        server = start_server(env, log)
        try:
            base_url = f"http://127.0.0.1:{port}"
            await wait_until_up(base_url, server, log)
            found = Site(base_url, key)
            await populate(found, settings, url, publisher_id)
            yield found
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            client = aioredis.Redis.from_url(TEST_REDIS_URL)
            stale = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
            if stale:
                await client.delete(*stale)
            await client.aclose()


BARS = """els => els.map(e => [e.dataset.value, +e.dataset.clicks, +e.dataset.billable,
    +e.dataset.unique, +e.dataset.flagged, +e.dataset.share])"""
ROWS = """els => els.map(e => [e.dataset.value,
    ...[...e.querySelectorAll('td')].map(td => td.innerText.trim())])"""


async def breakdown_read(page: Any, expected: Counter[str]) -> None:
    """The chart's bars and the table's rows: each value's clicks as ``expected``, the
    most first; chart and table agree; the totals row adds them up."""
    bars = await page.eval_on_selector_all("#breakdown-chart g.hbar", BARS)
    total = sum(expected.values())
    assert {b[0]: b[1] for b in bars} == dict(expected), bars
    assert [b[1] for b in bars] == sorted((b[1] for b in bars), reverse=True)
    for value, clicks, billable, unique, flagged, share in bars:
        assert billable + flagged == clicks and 0 < unique <= billable, value
        assert abs(share - clicks / total) < 1e-6
    rows = await page.eval_on_selector_all("#breakdown tbody tr.value", ROWS)
    counts = [(r[0], *(int(c.replace(",", "")) for c in r[2:6])) for r in rows]
    assert counts == [tuple(b[:5]) for b in bars]
    for row, bar in zip(rows, bars, strict=True):
        assert row[6] == f"{bar[5] * 100:.2f} %"
    total_row = await page.eval_on_selector("#breakdown tr.total", "e => e.dataset.value")
    assert total_row == ""
    totals = await page.inner_text("#breakdown tr.total td:nth-child(2)")
    assert totals == f"{total:,}"


async def sign_in(page: Any, site: Site) -> None:
    await page.goto(f"{site.base_url}/dashboard/login")
    await page.fill("#api_key", site.key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.base_url}/dashboard")


async def test_the_breakdowns_in_chromium(site: Site) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await sign_in(page, site)
            await page.click("header nav >> text=Traffic")
            await page.wait_for_url(f"{site.base_url}/dashboard/traffic")
            assert await page.input_value("#by") == "country"
            await breakdown_read(page, site.countries)
            unknown = page.locator("#breakdown tr[data-value=unknown] td:first-child")
            assert await unknown.inner_text() == "Unknown"
            # The chart's tooltip says it in words, with the share.
            title = await page.inner_html("#breakdown-chart g.hbar[data-value=BR] title")
            assert title.startswith(f"Brazil (BR): {site.countries['BR']} clicks") or (
                title.startswith(f"BR: {site.countries['BR']} clicks")
            )
            ARTIFACTS.mkdir(exist_ok=True)
            path = ARTIFACTS / "breakdown-desktop.png"
            await page.screenshot(path=str(path), full_page=True)

            # By device, with the picker; then only Brazil's clicks, with the filters.
            await page.select_option("#by", "device")
            await page.click("form.breakdown-form button[type=submit]")
            await page.wait_for_url(re.compile(r"/dashboard/traffic\?.*by=device"))
            await breakdown_read(page, site.devices)
            await page.click("details.filters summary")
            await page.fill("#f-country", "BR")
            await page.click("form.breakdown-form button[type=submit]")
            await page.wait_for_url(re.compile(r"/dashboard/traffic\?.*country=BR"))
            await breakdown_read(page, site.brazil_devices)
            assert "Only clicks with country BR." in await page.inner_text("#filtered")
            await page.screenshot(
                path=str(ARTIFACTS / "breakdown-device-desktop.png"), full_page=True
            )
            assert errors == [], errors
        finally:
            await browser.close()


async def test_the_breakdowns_on_a_phone(site: Site) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                viewport={"width": PHONE_WIDTH, "height": PHONE_HEIGHT},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
            page = await context.new_page()
            await sign_in(page, site)
            await page.click("header nav >> text=Traffic")
            await page.wait_for_url(f"{site.base_url}/dashboard/traffic")
            await fits_the_phone(page, "breakdown by country")
            await breakdown_read(page, site.countries)
            await in_view(page, "#breakdown td", None)
            await in_view(page, "#breakdown-chart svg", 1)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "breakdown-phone.png"), full_page=True)
            await page.goto(f"{site.base_url}/dashboard/traffic?by=device")
            await fits_the_phone(page, "breakdown by device")
            await breakdown_read(page, site.devices)
            await page.click("details.filters summary")  # the filters open: still no scroll
            await fits_the_phone(page, "breakdown's filters")
            await in_view(page, "details.filters input", None)
            await page.screenshot(
                path=str(ARTIFACTS / "breakdown-device-phone.png"), full_page=True
            )
        finally:
            await browser.close()
