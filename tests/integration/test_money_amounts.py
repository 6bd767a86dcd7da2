"""Huge amounts and failing closes, on real Postgres, periods judged in Asia/Shanghai.

- The door: an order amount above CLICKTRACK_MAX_ORDER_AMOUNT (default 1,000,000.00) is a
  422 in plain words, and nothing is stored.
- The columns: sums of amounts over a publisher's lifetime fit, even for orders stored before
  the bound with the largest amount the order column holds (999,999,999,999.99).
- The close: each publisher in its own transaction; one that fails is reported (API answer,
  CLI output) with the reason and left untouched, the others are closed; closing again
  completes it and credits nothing twice.

The close tests close periods for every publisher: they run on a database of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.accounts.apikeys import Role, create_key
from app.core.db import Pool, create_pool
from app.orders import store
from app.orders.status import OrderStatus
from app.settings import Settings
from tests.conftest import migrated_database
from tests.support.accounts import SHANGHAI, Account, app_on, bearer
from tests.support.orders import add_click, at

D = Decimal
HUGE = "999999999999.99"  # the largest amount numeric(14, 2) holds


def cst(text: str) -> datetime:
    """A Shanghai wall-clock time."""
    return at(text + "+08:00")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"period_timezone": SHANGHAI})


async def test_amounts_above_the_maximum_are_refused(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str
) -> None:
    account = await Account.open(app_client, pool, admin_key)
    placed = cst("2016-09-12T10:00:00")
    for _ in range(13):
        order = await account.new_order(placed, HUGE)
        refused = await account.post(order, "completed", placed + timedelta(days=2))
        assert refused.status_code == 422, refused.text
        assert refused.json() == {
            "error": "invalid",
            "message": "amount: 999999999999.99 is more than the largest order amount accepted "
            "(1000000.00 US dollars)",
            "details": [
                {
                    "field": "amount",
                    "problem": "999999999999.99 is more than the largest order amount accepted "
                    "(1000000.00 US dollars)",
                }
            ],
        }
    for many_digits in ("1000000000000000.00", "1e30", "123456789012345678901234567890"):
        refused = await account.post(order, "completed", placed, many_digits)
        assert refused.status_code == 422
        assert "more than the largest order amount accepted" in refused.json()["message"]
    just_over = await account.post(order, "completed", placed, "1000000.01")
    assert just_over.status_code == 422 and "1000000.01 is more" in just_over.json()["message"]
    stored = await pool.fetchval(
        "SELECT count(*) FROM orders WHERE merchant_id = $1", account.merchant_id
    )
    assert stored == 0
    largest = await account.completed(placed, "1000000.00")
    assert (await account.order_money(largest))["amount"] == "1000000.00"


async def test_the_maximum_is_a_setting(pool: Pool, admin_key: str, settings: Settings) -> None:
    async with app_on(settings.model_copy(update={"max_order_amount": D("500.00")})) as client:
        account = await Account.open(client, pool, admin_key)
        placed = cst("2016-09-12T10:00:00")
        order = await account.new_order(placed, "500.01")
        refused = await account.post(order, "completed", placed)
        assert refused.status_code == 422 and "(500.00 US dollars)" in refused.json()["message"]
        assert (await account.post(order, "completed", placed, "500.00")).status_code == 200


@dataclass
class Own:
    """The app on a database of its own: its client, pool, admin key and URL."""

    client: httpx.AsyncClient
    pool: Pool
    admin_key: str
    url: str


@pytest.fixture
async def own(settings: Settings) -> AsyncIterator[Own]:
    async with migrated_database("clicktrack_money") as url:
        pool = await create_pool(url, max_size=6)
        try:
            async with pool.acquire() as conn:
                _, key = await create_key(conn, Role.admin, None, "test admin")
            async with app_on(settings.model_copy(update={"database_url": url})) as client:
                yield Own(client, pool, key, url)
        finally:
            await pool.close()


async def stored_before_the_bound(account: Account, placed: datetime, amount: str) -> None:
    """An order as the postback stored it before amounts were bounded at the door."""
    async with account.pool.acquire() as conn:
        click_id = await add_click(conn, account.link, placed - timedelta(minutes=3))
        report = store.OrderReport(
            order_ref=f"H-{uuid.uuid4().hex[:10]}",
            click_ref=click_id,
            ordered_at=placed,
            amount=D(amount),
            currency="USD",
            category="home-garden",
            new_buyer=False,
            status=OrderStatus.completed,
            status_at=placed + timedelta(days=2),
        )
        await store.record_postback(conn, account.merchant_id, report)


async def close_all(client: httpx.AsyncClient, admin_key: str, period: str) -> dict[str, Any]:
    response = await client.post(f"/api/v1/periods/{period}/close", headers=bearer(admin_key))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def cli_close(database_url: str, period: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CLICKTRACK_DATABASE_URL": database_url,
        "CLICKTRACK_PERIOD_TIMEZONE": SHANGHAI,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "close-period", period],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


REFUSE = """
CREATE FUNCTION test_refuse_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.publisher_id = {publisher} THEN
        RAISE EXCEPTION 'numeric field overflow' USING ERRCODE = '22003',
            DETAIL = 'injected by the test';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER test_refuse_ledger BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION test_refuse_ledger();
"""


async def test_huge_sums_close_and_a_failing_publisher_never_stops_the_others(
    own: Own,
) -> None:
    client, pool, admin_key = own.client, own.pool, own.admin_key
    first, huge, last = [await Account.open(client, pool, admin_key) for _ in range(3)]
    september = cst("2016-09-12T10:00:00")
    await first.completed(september, "1000.00")
    for _ in range(13):
        await stored_before_the_bound(huge, september, HUGE)
    await last.completed(september, "500.00")

    closed = await close_all(client, admin_key, "2016-09")
    assert closed["failed"] == 0 and closed["publishers"] == 3
    assert [(r["outcome"], r["periods"]) for r in closed["results"]] == [
        ("closed", ["2016-09"])
    ] * 3
    big = next(c for c in closed["closed"] if c["publisher_id"] == huge.publisher_id)
    # 999,999,999,999.99 x 8 % = 79,999,999,999.9992 -> 80,000,000,000.00, thirteen times.
    assert (big["sales"], big["credited"]) == ("12999999999999.87", "1040000000000.00")
    assert await huge.balance() == D("1040000000000.00")

    october = cst("2016-10-12T10:00:00")
    await first.completed(october, "100.00")
    await stored_before_the_bound(huge, october, HUGE)
    await last.completed(october, "200.00")
    async with pool.acquire() as conn:
        await conn.execute(REFUSE.format(publisher=huge.publisher_id))
    try:
        report = await close_all(client, admin_key, "2016-10")
        outcomes = {r["publisher_id"]: r for r in report["results"]}
        assert outcomes[first.publisher_id]["outcome"] == "closed"
        assert outcomes[last.publisher_id]["outcome"] == "closed"
        failed = outcomes[huge.publisher_id]
        assert failed["outcome"] == "failed" and failed["periods"] == []
        assert failed["reason"] == (
            "the database refused to store the close: numeric field overflow (injected by the test)"
        )
        assert report["failed"] == 1
        assert [p["period"] for p in await huge.get("/api/v1/money/periods")] == ["2016-09"]
        assert await huge.balance() == D("1040000000000.00")  # nothing half-written

        ran = cli_close(own.url, "2016-10")
        assert ran.returncode == 1 and "Traceback" not in ran.stderr
        assert f"publisher {huge.publisher_id}: failed: the database refused" in ran.stdout
        assert f"publisher {first.publisher_id}: already closed" in ran.stdout
        assert "1 failed" in ran.stdout
        assert f"could not be closed ({huge.publisher_id})" in ran.stderr
    finally:
        async with pool.acquire() as conn:
            await conn.execute("DROP TRIGGER test_refuse_ledger ON ledger")

    ran = cli_close(own.url, "2016-10")
    assert ran.returncode == 0, ran.stderr
    # September's sales reach the tier: 999,999,999,999.99 x 10 % -> 100,000,000,000.00.
    assert f"publisher {huge.publisher_id}: closed 2016-10 (credited 100000000000.00" in ran.stdout
    again = await close_all(client, admin_key, "2016-10")
    assert again["already_closed"] == 3 and again["closed"] == []
    assert await first.balance() == D("88.00")
    assert await last.balance() == D("56.00")
    assert await huge.balance() == D("1140000000000.00")
