"""The Postbacks page in Debian's Chromium, headless, driven by Playwright, against a real
``python -m app.serve`` (as tests/integration/test_dashboard_browser.py runs it; no sender
runs, so nothing is sent anywhere): the publisher opens the page from the navigation,
unfolds a failed delivery's attempts (the receiver's answer shown as text, never as
markup), replays it and sees it pending with the outcome in words, then sends a test event.
On a 390 px phone the page, attempts unfolded, fits without sideways scrolling.
Screenshots: test-artifacts/postbacks-desktop.png and postbacks-phone.png."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis.asyncio as aioredis

from app.accounts.apikeys import Role, create_key
from app.postbacks import outbox, store
from app.postbacks.endpoints import EndpointKind
from app.postbacks.queue import Attempt, Outcome, record_attempt
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
from tests.support.reports import own_database, own_pool

# A receiver's answer: markup that must show as text, long enough to wrap on a phone.
ANSWER = "<b>Internal error</b> " + "x" * 300


@dataclass
class Site:
    base_url: str
    key: str
    webhook: int
    postback: int
    failed: int  # two attempts, 500 then given up
    delivered: int


async def populate(url: str) -> Site:
    """A publisher with a webhook and a postback endpoint, a failed delivery and a
    delivered one (attempts recorded as the sender records them)."""
    async with own_pool(url) as pool, pool.acquire() as conn:
        publisher_id = await conn.fetchval(
            "INSERT INTO publishers (name) VALUES ('Example Coupons Blog') RETURNING id"
        )
        _, key = await create_key(conn, Role.publisher, publisher_id)
        events = ["order_completed", "order_refunded", "commission_credited"]
        webhook, _ = await store.create_endpoint(
            conn, publisher_id, EndpointKind.webhook, "https://hooks.example.com/clicktrack", events
        )
        postback, _ = await store.create_endpoint(
            conn,
            publisher_id,
            EndpointKind.postback,
            "https://ts.example.com/pb?cid={click_id}&payout={commission}&txid={event_id}",
            events,
        )
        failed = await outbox.emit_test(conn, webhook.id, publisher_id)
        for attempt in (
            Attempt(Outcome.retry, 35, 500, ANSWER, "answered 500"),
            Attempt(Outcome.failed, 48, 500, ANSWER, "answered 500"),
        ):
            await record_attempt(conn, failed, attempt, None)
        await conn.execute("UPDATE postback_deliveries SET attempts = 2 WHERE id = $1", failed)
        delivered = await outbox.emit_test(conn, postback.id, publisher_id)
        await record_attempt(conn, delivered, Attempt(Outcome.delivered, 9, 200, "ok"), None)
        await conn.execute("UPDATE postback_deliveries SET attempts = 1 WHERE id = $1", delivered)
    return Site("", key, webhook.id, postback.id, failed, delivered)


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    browser_or_skip()
    prefix = f"cttest:{uuid.uuid4().hex[:12]}"
    port = free_port()
    folder = tmp_path_factory.mktemp("postbacks")
    log = folder / "server.log"
    async with own_database() as url:
        found = await populate(url)
        env = {
            **os.environ,
            "CLICKTRACK_DATABASE_URL": url,
            "CLICKTRACK_REDIS_URL": TEST_REDIS_URL,
            "CLICKTRACK_KEY_PREFIX": prefix,
            "CLICKTRACK_PORT": str(port),
            "CLICKTRACK_HOST": "127.0.0.1",
            "CLICKTRACK_COOKIE_SECURE": "false",
            "CLICKTRACK_SPOOL_DIR": str(folder / "spool"),
        }
        server = start_server(env, log)
        try:
            found.base_url = f"http://127.0.0.1:{port}"
            await wait_until_up(found.base_url, server, log)
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


async def sign_in(page: Any, site: Site) -> None:
    await page.goto(f"{site.base_url}/dashboard/login")
    await page.fill("#api_key", site.key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.base_url}/dashboard")


async def unfold_attempts(page: Any, site: Site) -> Any:
    """Open the failed delivery's attempts; return its row."""
    row = page.locator(f"#deliveries tr[data-delivery='{site.failed}']")
    attempts = row.locator("details.attempts li")
    assert not await attempts.first.is_visible()  # folded until asked
    await row.locator("details.attempts summary").click()
    assert await attempts.count() == 2 and await attempts.first.is_visible()
    first = await attempts.first.inner_text()
    assert "failed, retried · HTTP 500 · 35 ms" in first and "answered 500" in first
    assert "<b>Internal error</b>" in first  # the answer shown as text, not as markup
    assert await row.locator("details.attempts b").count() == 0
    return row


async def test_the_postbacks_page_in_chromium(site: Site) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await sign_in(page, site)
            await page.click("header nav >> text=Postbacks")
            await page.wait_for_url(f"{site.base_url}/dashboard/postbacks")
            endpoints = await page.eval_on_selector_all(
                "#endpoints tbody tr", "els => els.map(e => e.dataset.endpoint)"
            )
            assert endpoints == [str(site.webhook), str(site.postback)]
            row = await unfold_attempts(page, site)
            assert await row.get_attribute("data-status") == "failed"
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "postbacks-desktop.png"), full_page=True)

            await row.locator("button[data-action=replay]").click()
            await page.wait_for_url(re.compile(r"/dashboard/postbacks\?.*done=replayed"))
            outcome = await page.inner_text("#outcome")
            assert outcome.startswith(f"Delivery {site.failed} is queued again")
            replayed = page.locator(f"#deliveries tr[data-delivery='{site.failed}']")
            assert await replayed.get_attribute("data-status") == "pending"
            assert await replayed.locator("button[data-action=replay]").count() == 0
            await page.reload()  # the redirect's page: a reload repeats nothing
            assert await replayed.get_attribute("data-status") == "pending"

            test = f"#endpoints tr[data-endpoint='{site.postback}'] button[data-action=test]"
            await page.click(test)
            await page.wait_for_url(re.compile(r"/dashboard/postbacks\?.*done=test"))
            assert "A test event is queued" in await page.inner_text("#outcome")
            newest = page.locator("#deliveries tbody tr").first
            assert await newest.get_attribute("data-status") == "pending"
            assert int(await newest.get_attribute("data-delivery") or 0) > site.delivered
            await page.screenshot(
                path=str(ARTIFACTS / "postbacks-replayed-desktop.png"), full_page=True
            )
            assert errors == [], errors
        finally:
            await browser.close()


async def test_the_postbacks_page_on_a_phone(site: Site) -> None:
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
            await page.click("header nav >> text=Postbacks")
            await page.wait_for_url(f"{site.base_url}/dashboard/postbacks")
            await fits_the_phone(page, "postbacks")
            await in_view(page, "#endpoints td", None)
            await in_view(page, "#deliveries td", None)
            await in_view(page, "form.postbacks-filter select", 3)
            await page.locator(
                f"#deliveries tr[data-delivery='{site.failed}'] details.attempts summary"
            ).click()
            await fits_the_phone(page, "postbacks, attempts unfolded")
            await in_view(page, f"#deliveries tr[data-delivery='{site.failed}'] pre.response", 2)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "postbacks-phone.png"), full_page=True)
        finally:
            await browser.close()
