"""The dashboard as a publisher sees it: Debian's Chromium, headless, driven by Playwright,
against a real ``python -m app.serve`` on a free port. It signs in with the API key, reads
the numbers off the cards and the charts, downloads the Live Order Tracking CSV, saves a
screenshot to test-artifacts/dashboard.png (and dashboard-desktop.png) and signs out; then, on
a 390 px phone, every page fits the screen, tables scroll in their own box, and the link
builder gives the tracking URL and its QR code (dashboard-phone.png, withdrawals-phone.png,
links-phone.png, builder-phone.png).

Playwright only drives the browser here: it never downloads one (``playwright install`` is
never run); the browser is ``/usr/bin/chromium``, which ``make test`` installs when missing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import random
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from app.accounts.apikeys import Role, create_key
from app.clicks.record import Click, Flag
from app.links import store as link_store
from app.money.periods import Period
from app.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.support.orders import ensure_default_plan, new_merchant, order_body, signed
from tests.support.reports import EPOCH, click, flush, own_database, own_pool

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TRACKING_IDS = ["news", "video", "mail", None]


def browser_or_skip() -> None:
    """Skip, loudly, only where Chromium is missing and cannot be had; in CI, fail."""
    problems = []
    if not CHROMIUM.exists():
        problems.append(
            f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium, as root "
            "on Debian); install it by hand otherwise"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is missing: .venv/bin/pip install -e '.[dev]'")
    if problems:
        reason = "BROWSER TEST NOT RUN: " + "; ".join(problems)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Site:
    base_url: str
    key: str
    publisher_id: int
    clicks: list[Click] = field(default_factory=list)
    orders: list[tuple[str, datetime, str, str | None]] = field(default_factory=list)
    balance: Decimal = Decimal("0.00")
    tz: tzinfo = UTC
    codes: list[str] = field(
        default_factory=list
    )  # the publisher's links  # the period time zone: the dashboard's days are its days

    def day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def click_day(self, c: Click) -> date:
        return self.day(EPOCH + timedelta(microseconds=c.ts_us))


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


def start_server(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m app.serve`` as an operator runs it, its output in ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "app.serve"],
            cwd=REPO,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


async def wait_until_up(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=1) as client:
        for _ in range(150):
            if server.poll() is not None:
                raise AssertionError(f"the server exited: {tail(log)}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the server did not answer: {tail(log)}")


async def populate(site: Site, settings: Settings, pool_url: str) -> None:
    """Clicks over three days through the flusher; orders by signed postback to the running
    server; an order of the previous period credited by closing it (the balance)."""
    redis = aioredis.Redis.from_url(TEST_REDIS_URL)
    async with own_pool(pool_url) as pool:
        try:
            async with pool.acquire() as conn:
                link = await link_store.create_link(
                    conn, site.publisher_id, "https://shop.example.com/a"
                )
                # A second link with a long destination: the Links table must scroll in its
                # box on a phone, never the page.
                long = "https://shop.example.com/collections/summer/" + "x" * 150 + "?ref=blog"
                second = await link_store.create_link(conn, site.publisher_id, long, code="Sum26")
                site.codes += [link.code, second.code]
                await ensure_default_plan(conn)
                merchant = await new_merchant(conn)
                _, admin_key = await create_key(conn, Role.admin, None)
            rng = random.Random(5)
            today = datetime.now(UTC).date()
            for back, count in ((2, 40), (1, 65), (0, 25)):
                day = today - timedelta(days=back)
                start = datetime(day.year, day.month, day.day, tzinfo=UTC)
                for _ in range(count):
                    when = min(start + timedelta(seconds=rng.randrange(86_400)), datetime.now(UTC))
                    flags = int(Flag.bot) if rng.random() < 0.12 else 0
                    site.clicks.append(
                        click(
                            when,
                            link.id,
                            site.publisher_id,
                            f"v{rng.randrange(30)}",
                            af=rng.choice(TRACKING_IDS),
                            flags=flags,
                            code=link.code,
                        )
                    )
            await flush(settings, redis, pool, site.clicks)

            now = datetime.now(UTC)
            previous = Period.containing(now, settings.period_tz).previous()
            placed_before = previous.starts_at(settings.period_tz) + timedelta(days=1)
            scripted = [
                (placed_before, "250.00", "completed", "news"),
                (now - timedelta(days=1), "120.00", "completed", "news"),
                (now - timedelta(hours=2), "80.00", "incomplete", "video"),
                (now - timedelta(days=2), "40.00", "completed", "news"),
            ]
            async with httpx.AsyncClient(base_url=site.base_url) as client:
                for placed, amount, status, af in scripted:
                    made = click(
                        placed, link.id, site.publisher_id, f"buyer{amount}", af=af, code=link.code
                    )
                    await flush(settings, redis, pool, [made])
                    site.clicks.append(made)
                    ref = f"O-{uuid.uuid4().hex[:8]}"
                    body = order_body(
                        ref, made.click_id, placed, amount, status=status,
                        status_time=placed + timedelta(hours=1),
                    )  # fmt: skip
                    answer = await client.post(
                        "/api/v1/postback", content=body, headers=signed(*merchant, body)
                    )
                    assert answer.status_code == 200, answer.text
                    site.orders.append((ref, placed, status, af))
                closed = await client.post(
                    f"/api/v1/periods/{previous}/close",
                    headers={"Authorization": f"Bearer {admin_key}"},
                )
                assert closed.status_code == 200, closed.text
            # The close credits 8 % of each order completed before the previous period ended:
            # the 250.00 order, and others too when today is just past the 10th.
            ended = previous.ends_at(settings.period_tz)
            site.balance = sum(
                (
                    (Decimal(amount) * 8 / 100).quantize(Decimal("0.01"), ROUND_HALF_UP)
                    for placed, amount, status, _ in scripted
                    if status == "completed" and placed + timedelta(hours=1) < ended
                ),
                Decimal("0.00"),
            )
        finally:
            await redis.aclose()


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    browser_or_skip()
    prefix = f"cttest:{uuid.uuid4().hex[:12]}"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    folder = tmp_path_factory.mktemp("dashboard")
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
            await wait_until_up(base_url, server, log)
            found = Site(base_url, key, publisher_id, tz=settings.period_tz)
            await populate(found, settings, url)
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


def expected_days(site: Site, days: list[date]) -> dict[str, tuple[int, int]]:
    billable: Counter[date] = Counter()
    flagged: Counter[date] = Counter()
    for c in site.clicks:
        day = site.click_day(c)
        (flagged if c.flags else billable)[day] += 1
    return {d.isoformat(): (billable[d], flagged[d]) for d in days}


async def test_the_dashboard_in_chromium(site: Site, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    today = site.day(datetime.now(UTC))
    days = [today - timedelta(days=n) for n in range(29, -1, -1)]
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(
                accept_downloads=True, viewport={"width": 1280, "height": 900}
            )
            page = await context.new_page()
            await page.goto(f"{site.base_url}/dashboard")
            assert page.url == f"{site.base_url}/dashboard/login"
            await page.fill("#api_key", site.key)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{site.base_url}/dashboard")
            assert site.key not in page.url

            [cookie] = [c for c in await context.cookies() if c["name"] == "ct_dash"]
            assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
            assert site.key not in cookie["value"]
            assert site.key not in await page.evaluate(
                "document.cookie + JSON.stringify(localStorage)"
            )

            # The zone of every day and time shown, stated once above the charts.
            zone = await page.get_attribute("#time-zone", "data-time-zone")
            assert zone == str(site.tz)
            assert f"Days and times are in {zone}" in await page.inner_text("#time-zone")

            # The cards.
            in_range = [c for c in site.clicks if site.click_day(c) >= days[0]]
            billable = sum(1 for c in in_range if not c.flags)
            balance = await page.inner_text("[data-figure=balance] strong")
            assert balance == f"US${site.balance:,.2f}" and site.balance >= Decimal("20.00")
            assert await page.inner_text("[data-figure=clicks] strong") == f"{billable:,}"
            placed = [o for o in site.orders if site.day(o[1]) >= days[0]]
            completed = sum(1 for o in placed if o[2] == "completed")
            fraction = Decimal(completed) / Decimal(billable)
            rate = fraction.quantize(Decimal("0.000001"), ROUND_HALF_UP) * 100
            assert await page.inner_text("[data-figure=conversion] strong") == f"{rate:.2f} %"

            # The clicks chart: one bar per day, with that day's billable and flagged clicks.
            bars = await page.eval_on_selector_all(
                "#clicks-chart g.bar",
                "els => els.map(e => [e.dataset.label, +e.dataset.billable, +e.dataset.flagged])",
            )
            assert {label: (b, f) for label, b, f in bars} == expected_days(site, days)
            busy_days = sum(1 for b, _ in expected_days(site, days).values() if b)
            assert await page.locator("#clicks-chart g.bar rect.s0").count() == busy_days

            # The orders chart.
            orders = await page.eval_on_selector_all(
                "#orders-chart g.bar",
                "els => els.map(e => [e.dataset.label, +e.dataset.completed, +e.dataset.other])",
            )
            per_day: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for _, when, status, _ in placed:
                per_day[site.day(when).isoformat()][0 if status == "completed" else 1] += 1
            assert {label: [c, o] for label, c, o in orders if c or o} == dict(per_day)

            # Top tracking ids, most billable clicks first.
            ranked = await page.eval_on_selector_all(
                "#top-ids-chart g.rank",
                "els => els.map(e => [e.dataset.label, +e.dataset.billable])",
            )
            counts: Counter[str] = Counter(
                c.af if c.af is not None else "(none)" for c in in_range if not c.flags
            )
            assert [r[1] for r in ranked] == sorted((r[1] for r in ranked), reverse=True)
            assert dict(ranked) == dict(counts)

            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-desktop.png"), full_page=True)

            # The Live Order Tracking CSV, downloaded as a publisher would.
            async with page.expect_download() as download_info:
                await page.click("#download-orders")
            download = await download_info.value
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
            assert saved.name.startswith("live-orders-") and saved.suffix == ".csv"
            raw = saved.read_bytes()
            assert raw.startswith(b"\xef\xbb\xbf")  # the dashboard's CSVs carry a BOM (Excel)
            rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
            assert {r["order_id"] for r in rows} == {o[0] for o in placed}
            assert {r["af"] for r in rows} <= {"news", "video"}

            await page.goto(f"{site.base_url}/dashboard/links")
            assert await page.locator("#links tbody tr").count() == len(site.codes)
            # A wide screen keeps the table: each column's cells under its heading.
            columns = await page.eval_on_selector(
                "#links",
                "t => [getComputedStyle(t).display, [...t.querySelectorAll('th')].map(e =>"
                " Math.round(e.getBoundingClientRect().left)), [...t.querySelectorAll("
                "'tbody tr:first-child td')].map(e => Math.round(e.getBoundingClientRect().left))]",
            )
            assert columns[0] == "table" and columns[1] == columns[2], columns
            await page.screenshot(path=str(ARTIFACTS / "links-desktop.png"), full_page=True)

            await page.click("text=Sign out")
            await page.wait_for_url(f"{site.base_url}/dashboard/login")
            await page.goto(f"{site.base_url}/dashboard")
            assert page.url == f"{site.base_url}/dashboard/login"
        finally:
            await browser.close()


PHONE_WIDTH, PHONE_HEIGHT = 390, 844

# Every table's scroll box: [table id, box left, box right, box scrollWidth, box clientWidth,
# overflow-x].
SCROLL_BOXES = """els => els.map(e => {
    const r = e.getBoundingClientRect();
    return [e.querySelector('table').id, r.left, r.right, e.scrollWidth, e.clientWidth,
            getComputedStyle(e).overflowX];
})"""


async def fits_the_phone(page: Any, what: str) -> None:
    """No sideways scroll of the page; each table in a box within the screen, which scrolls
    (and does) when the table is wider; each chart within its figure."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE_WIDTH, f"{what}: the page is {width} px wide"
    for table_id, left, right, scroll, client, overflow in await page.eval_on_selector_all(
        ".table-scroll", SCROLL_BOXES
    ):
        assert left >= 0 and right <= PHONE_WIDTH, (what, table_id, left, right)
        assert overflow == "auto", (what, table_id)
        assert await page.locator(f"#{table_id}").is_visible()
        if scroll > client:  # wider than the screen: it scrolls inside its box
            box = page.locator(f".table-scroll:has(#{table_id})")
            moved = await box.evaluate("e => { e.scrollLeft = e.scrollWidth; return e.scrollLeft }")
            assert moved > 0, (what, table_id)
            await box.evaluate("e => { e.scrollLeft = 0 }")  # back, for the screenshots
    for svg_right, figure_right in await page.eval_on_selector_all(
        "figure svg.chart",
        "els => els.map(e => [e.getBoundingClientRect().right,"
        " e.closest('figure').getBoundingClientRect().right])",
    ):
        assert svg_right <= figure_right + 0.5 and svg_right <= PHONE_WIDTH, what


async def in_view(page: Any, selector: str, count: int | None) -> None:
    """Every element of ``selector`` (``count`` of them, when given) is visible and within
    the phone's width, without scrolling sideways."""
    boxes = await page.eval_on_selector_all(
        selector,
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return [r.left, r.right, r.width]; })",
    )
    assert boxes and (count is None or len(boxes) == count), (selector, boxes)
    for left, right, width in boxes:
        assert width > 0 and left >= 0 and right <= PHONE_WIDTH, (selector, left, right)


async def test_the_dashboard_on_a_phone(site: Site) -> None:
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
            await context.grant_permissions(
                ["clipboard-read", "clipboard-write"], origin=site.base_url
            )
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(f"{site.base_url}/dashboard/login")
            await page.wait_for_load_state("networkidle")
            assert errors == [], errors  # the icon too is found (static/favicon.svg)
            await fits_the_phone(page, "sign-in")
            await page.fill("#api_key", site.key)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{site.base_url}/dashboard")

            await fits_the_phone(page, "overview")
            assert await page.locator("#top-ids").is_visible()
            assert await page.locator("#income").is_visible()
            await in_view(page, "#income td, #top-ids td", None)
            assert await page.locator("#clicks-chart svg").is_visible()
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)

            await page.click("header nav >> text=Withdrawals")
            await page.wait_for_url(f"{site.base_url}/dashboard/withdrawals")
            await fits_the_phone(page, "withdrawals")
            assert await page.inner_text("#balance") == f"US${site.balance:,.2f}"
            await page.screenshot(path=str(ARTIFACTS / "withdrawals-phone.png"), full_page=True)

            await page.click("header nav >> text=Links")
            await page.wait_for_url(f"{site.base_url}/dashboard/links")
            await fits_the_phone(page, "links")
            for code in site.codes:
                assert await page.locator(f"tr[data-code='{code}']").count() == 1
            # Each row a card: destination, status and every action in view, no swiping.
            assert not await page.eval_on_selector(
                ".table-scroll:has(#links)", "e => e.scrollWidth > e.clientWidth"
            )
            await in_view(page, "#links td.wrap", len(site.codes))
            await in_view(page, "#links td.actions .button, #links td.actions button", None)
            labels = await page.eval_on_selector_all(
                "#links tr:first-child td",
                "els => els.map(e => getComputedStyle(e, '::before').content)",
            )
            assert labels[:3] == ['"Code"', '"Short URL"', '"Destination"'], labels
            await page.screenshot(path=str(ARTIFACTS / "links-phone.png"), full_page=True)

            # The builder: the tracking URL in a text field, the copy button, the QR code.
            await page.click("tr[data-code=Sum26] >> text=Get link")
            await page.fill("#af", "news")
            await page.fill("#cn", "summer sale")
            await page.click("form >> text=Get link")
            await page.wait_for_selector("#tracking-url")
            url = f"{site.base_url}/e/Sum26?af=news&cn=summer%20sale"
            assert await page.input_value("#tracking-url") == url
            qr = page.locator("#qr svg")
            assert await qr.is_visible()
            box = await qr.bounding_box()
            assert box is not None and 120 <= box["width"] <= PHONE_WIDTH
            await page.click("button.copy")
            await page.wait_for_selector("button.copy.copied")
            assert await page.evaluate("navigator.clipboard.readText()") == url
            await fits_the_phone(page, "builder")
            await page.screenshot(path=str(ARTIFACTS / "builder-phone.png"), full_page=True)
            # The URL it gives redirects, with its tracking strings, to the link's destination.
            async with httpx.AsyncClient() as client:
                followed = await client.get(url, headers={"User-Agent": "Mozilla/5.0 Chrome/126"})
            assert followed.status_code == 302
            assert followed.headers["location"].startswith("https://shop.example.com/collections/")
        finally:
            await browser.close()
