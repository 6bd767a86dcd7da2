"""Commissions, closes, the ledger and withdrawals on real Postgres, through the API.

The worked example of the program's commission structure, replayed to the cent: US$400,000
of completed sales in the September 2016 period earn the standard 8 % and an incentive of
+2 % on the next period's orders, so US$200,000 of new buyers' orders then earn 16 %.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from app.money import ledger
from app.settings import Settings
from tests.support.orders import (
    add_click,
    at,
    ensure_default_plan,
    new_link,
    new_merchant,
    new_publisher,
    order_body,
    signed,
    uuid7_at,
)

D = Decimal


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Account:
    """A fresh publisher with its key, a link and a merchant that reports its orders."""

    client: httpx.AsyncClient
    pool: Pool
    admin_key: str
    publisher_id: int
    key: str
    merchant_id: int
    secret: str
    link: Any

    async def order(
        self,
        placed: datetime,
        amount: str,
        *,
        status: str = "completed",
        completed_after: timedelta = timedelta(days=2),
        new_buyer: bool = False,
        category: str = "home-garden",
        ref: str | None = None,
        af: str | None = None,
    ) -> str:
        """Report an order on a fresh click; return the merchant's order id."""
        async with self.pool.acquire() as conn:
            click_id = await add_click(conn, self.link, placed - timedelta(minutes=3), af=af)
        ref = ref or f"O-{uuid.uuid4().hex[:10]}"
        await self.report(
            ref, click_id, placed, amount, status, completed_after, new_buyer, category
        )
        return ref

    async def report(
        self,
        ref: str,
        click_id: str,
        placed: datetime,
        amount: str,
        status: str,
        completed_after: timedelta = timedelta(days=2),
        new_buyer: bool = False,
        category: str = "home-garden",
    ) -> dict[str, Any]:
        body = order_body(
            ref,
            click_id,
            placed,
            amount,
            status=status,
            status_time=placed + completed_after,
            new_buyer=new_buyer,
            category=category,
        )
        response = await self.client.post(
            "/api/v1/postback", content=body, headers=signed(self.merchant_id, self.secret, body)
        )
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def close(self, period: str, status: int = 200) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/periods/{period}/close",
            params={"publisher_id": self.publisher_id},
            headers=bearer(self.admin_key),
        )
        assert response.status_code == status, response.text
        result: dict[str, Any] = response.json()
        return result

    async def get(self, path: str, **params: str) -> Any:
        response = await self.client.get(path, params=params, headers=bearer(self.key))
        assert response.status_code == 200, response.text
        return response.json()

    async def withdraw(self, amount: str | None = None) -> httpx.Response:
        body = {} if amount is None else {"amount": amount}
        return await self.client.post(
            "/api/v1/money/withdrawals", json=body, headers=bearer(self.key)
        )

    async def balance(self) -> Decimal:
        return D((await self.get("/api/v1/money/balance"))["balance"])

    async def ledger_sum(self) -> Decimal:
        async with self.pool.acquire() as conn:
            return await ledger.ledger_sum(conn, self.publisher_id)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Withdrawals here are about balances, not the calendar: any day of the month will do
    (test_money_withdrawals.py tests the calendar)."""
    return settings.model_copy(update={"withdrawal_last_day": 31})


@pytest.fixture
async def account(app_client: httpx.AsyncClient, pool: Pool, admin_key: str) -> Account:
    async with pool.acquire() as conn:
        await ensure_default_plan(conn)
        publisher_id = await new_publisher(conn)
        link = await new_link(conn, publisher_id)
        merchant_id, secret = await new_merchant(conn)
    response = await app_client.post(
        f"/api/v1/publishers/{publisher_id}/api-keys", json={}, headers=bearer(admin_key)
    )
    key = response.json()["key"]
    return Account(app_client, pool, admin_key, publisher_id, key, merchant_id, secret, link)


async def test_the_worked_example_to_the_cent(account: Account) -> None:
    # September 2016 period (10 Sep - 9 Oct): US$400,000 of completed sales, standard rate.
    for day in (10, 20, 30):
        await account.order(at(f"2016-09-{day}T12:00:00"), "100000.00")
    await account.order(at("2016-10-07T23:00:00"), "100000.00")  # completes on the 9th
    # The new period's orders: US$200,000 from new buyers, plus a tablet and a small order.
    await account.order(at("2016-10-10T00:00:00"), "150000.00", new_buyer=True)
    await account.order(at("2016-10-25T08:30:00"), "49980.01", new_buyer=True)
    await account.order(at("2016-10-25T08:31:00"), "19.99", new_buyer=True)
    await account.order(
        at("2016-10-26T10:00:00"), "500.00", new_buyer=True, category="computer-office/tablets"
    )
    await account.order(at("2016-10-27T10:00:00"), "0.31")  # 0.0310 at 10 %

    september = await account.close("2016-09")
    assert [c["period"] for c in september["closed"]] == ["2016-09"]
    assert september["closed"][0]["sales"] == "400000.00"
    assert september["closed"][0]["credited"] == "32000.00"  # 8 %
    assert september["closed"][0]["orders_credited"] == 4

    october = (await account.close("2016-10"))["closed"][0]
    # 150,000.00 x 16 % = 24,000.00; 49,980.01 x 16 % = 7,996.8016 -> 7,996.80;
    # 19.99 x 16 % = 3.1984 -> 3.20; tablet 500 x (8 + 2) % = 50.00; 0.31 x 10 % -> 0.03.
    assert october["orders_credited"] == 5
    assert D(october["credited"]) == D("24000.00") + D("7996.80") + D("3.20") + D("50.00") + D(
        "0.03"
    )
    assert october["sales"] == "200500.31"
    orders = (await account.get("/api/v1/orders", ordered_from="2016-10-10T00:00:00Z"))["items"]
    rates = {o["amount"]: o["commission"] for o in orders}
    assert rates == {
        "150000.00": "24000.00",
        "49980.01": "7996.80",
        "19.99": "3.20",
        "500.00": "50.00",
        "0.31": "0.03",
    }
    entries = (await account.get("/api/v1/money/ledger"))["items"]
    new_buyer_credit = next(e for e in entries if e["amount"] == "24000.00")
    assert new_buyer_credit["detail"]["total_rate"] == "16"
    assert new_buyer_credit["detail"]["previous_sales"] == "400000.00"
    assert await account.balance() == D("64050.03") == await account.ledger_sum()

    # Income is booked in the month each period ends; closing again changes nothing.
    income = await account.get("/api/v1/money/income", month="2016-10")
    assert income == {**income, "credited": "32000.00", "net": "32000.00"}
    again = await account.close("2016-10")
    assert again["closed"] == [] and again["already_closed"] == 1
    assert await account.balance() == D("64050.03")


async def test_sixty_days_and_late_completion(account: Account) -> None:
    placed = at("2017-01-15T10:00:00")
    await account.order(placed, "100.00", completed_after=timedelta(days=60))  # just in time
    await account.order(placed, "200.00", completed_after=timedelta(days=60, seconds=1))
    await account.order(placed, "300.00", status="completed_payment")
    # Completed 40 days later, in the next period: credited when that one closes.
    await account.order(placed, "400.00", completed_after=timedelta(days=40))
    january = (await account.close("2017-01"))["closed"][0]
    assert january["orders_credited"] == 0
    closes = (await account.close("2017-03"))["closed"]  # closes February on the way
    assert [c["period"] for c in closes] == ["2017-02", "2017-03"]
    assert closes[0]["sales"] == "400.00" and closes[0]["credited"] == "32.00"
    assert closes[1]["sales"] == "100.00" and closes[1]["credited"] == "8.00"
    orders = (await account.get("/api/v1/orders"))["items"]
    qualifying = sorted(o["amount"] for o in orders if o["qualifies"])
    assert qualifying == ["100.00", "400.00"]


async def test_chargebacks_are_set_off_against_the_next_period(account: Account) -> None:
    placed = at("2017-05-12T09:00:00")
    refunded = await account.order(placed, "1000.00")
    disqualified = await account.order(placed, "500.00")
    await account.order(placed, "10.00")
    await account.close("2017-05")
    assert await account.balance() == D("120.80")
    click_of = {
        o["order_id"]: o["click_id"] for o in (await account.get("/api/v1/orders"))["items"]
    }

    later = await account.report(
        refunded, click_of[refunded], placed, "1000.00", "refunded", timedelta(days=30)
    )
    assert later["status"] == "refunded"
    orders = {o["order_id"]: o for o in (await account.get("/api/v1/orders"))["items"]}
    response = await account.client.post(
        f"/api/v1/orders/{orders[disqualified]['id']}/disqualify",
        json={"reason": "manual refreshing"},
        headers=bearer(account.admin_key),
    )
    assert response.status_code == 200 and response.json()["attribution"] == "disqualified"
    assert await account.balance() == D("120.80")  # nothing happens before the next close

    june = (await account.close("2017-06"))["closed"][0]
    assert june["orders_charged_back"] == 2 and june["charged_back"] == "-120.00"
    assert await account.balance() == D("0.80") == await account.ledger_sum()
    orders = {o["order_id"]: o for o in (await account.get("/api/v1/orders"))["items"]}
    assert orders[refunded]["charged_back"] == "-80.00"
    assert orders[disqualified]["disqualified_reason"] == "manual refreshing"
    income = await account.get("/api/v1/money/income", month="2017-07")
    assert income["charged_back"] == "-120.00" and income["net"] == "-120.00"
    # Charged back once only.
    await account.close("2017-07")
    assert await account.balance() == D("0.80")


async def test_withdrawals(account: Account) -> None:
    placed = at("2017-08-15T10:00:00")
    await account.order(placed, "200.00")  # 16.00: not above the minimum
    await account.close("2017-08")
    assert await account.balance() == D("16.00")
    refused = await account.withdraw()
    assert refused.status_code == 409 and "above 16" in refused.json()["message"]

    await account.order(at("2017-09-15T10:00:00"), "12.50")  # +1.00
    await account.close("2017-09")
    summary = await account.get("/api/v1/money/balance")
    assert summary["balance"] == "17.00" and summary["can_withdraw"] is True
    assert (await account.withdraw("15.00")).status_code == 409  # does not cover the fee
    assert (await account.withdraw("17.01")).status_code == 409  # more than the balance
    made = await account.withdraw("16.50")
    assert made.status_code == 201, made.text
    assert made.json() == {**made.json(), "amount": "16.50", "fee": "15.00", "payout": "1.50"}
    assert await account.balance() == D("0.50") == await account.ledger_sum()
    kinds = [(e["kind"], e["amount"]) for e in (await account.get("/api/v1/money/ledger"))["items"]]
    assert kinds[-2:] == [("withdrawal", "-1.50"), ("fee", "-15.00")]
    listed = (await account.get("/api/v1/money/withdrawals"))["items"]
    assert [w["id"] for w in listed] == [made.json()["id"]]


async def test_racing_withdrawals_never_overdraw(account: Account) -> None:
    await account.order(at("2017-10-15T10:00:00"), "1000.00")  # 80.00
    await account.close("2017-10")
    everything = await asyncio.gather(*(account.withdraw() for _ in range(8)))
    assert sorted(r.status_code for r in everything) == [201] + [409] * 7
    assert await account.balance() == D("0.00") == await account.ledger_sum()

    await account.order(at("2017-11-15T10:00:00"), "1000.00")  # 80.00 again
    await account.close("2017-11")
    parts = await asyncio.gather(*(account.withdraw("30.00") for _ in range(6)))
    assert sorted(r.status_code for r in parts) == [201, 201] + [409] * 4
    assert await account.balance() == D("20.00") == await account.ledger_sum()


async def test_estimate_summary_and_filters(account: Account) -> None:
    placed = at("2018-01-12T10:00:00")
    await account.order(placed, "100.00", af="blog", status="completed_payment")
    await account.order(placed, "50.00", af="chat", status="incomplete", new_buyer=True)
    await account.order(placed, "70.00", af="blog", status="refunded")
    estimate = await account.get("/api/v1/money/estimate", month="2018-01")
    # Placed in January, judged now: more than 60 days ago and never completed.
    assert estimate["orders"] == 0 and estimate["estimated_commission"] == "0.00"

    recent = datetime.now().astimezone() - timedelta(days=1)
    await account.order(recent, "100.00", status="completed_payment", completed_after=timedelta())
    await account.order(
        recent, "50.00", status="incomplete", new_buyer=True, completed_after=timedelta()
    )
    month = f"{recent.year:04d}-{recent.month:02d}"
    estimate = await account.get("/api/v1/money/estimate", month=month)
    assert estimate["orders"] == 2
    assert estimate["estimated_commission"] == "15.00"  # 8.00 + 7.00
    summary = await account.get("/api/v1/money/summary")
    assert summary["balance"] == "0.00"
    assert summary["this_month"]["month"] in (
        month,
        f"{datetime.now().year:04d}-{datetime.now().month:02d}",
    )

    blog = await account.get("/api/v1/orders", af="blog")
    assert sorted(o["amount"] for o in blog["items"]) == ["100.00", "70.00"]
    refunded = await account.get("/api/v1/orders", status="refunded")
    assert [o["amount"] for o in refunded["items"]] == ["70.00"]
    window = await account.get(
        "/api/v1/orders", ordered_from="2018-01-01T00:00:00Z", ordered_before="2018-02-01T00:00:00Z"
    )
    assert len(window["items"]) == 3
    several = await account.client.get(
        "/api/v1/orders?status=refunded&status=incomplete", headers=bearer(account.key)
    )
    assert len(several.json()["items"]) == 3  # the refunded one and two incomplete


async def test_isolation_and_errors(account: Account, app_client: httpx.AsyncClient) -> None:
    await account.order(at("2018-03-12T10:00:00"), "10.00")
    order_id = (await account.get("/api/v1/orders"))["items"][0]["id"]
    async with account.pool.acquire() as conn:
        stranger = await new_publisher(conn, "Stranger")
    key = (
        await app_client.post(
            f"/api/v1/publishers/{stranger}/api-keys", json={}, headers=bearer(account.admin_key)
        )
    ).json()["key"]
    theirs = await app_client.get(f"/api/v1/orders/{order_id}", headers=bearer(key))
    assert theirs.status_code == 404
    assert (await app_client.get("/api/v1/orders", headers=bearer(key))).json()["items"] == []
    peek = await app_client.get(
        "/api/v1/money/balance", params={"publisher_id": account.publisher_id}, headers=bearer(key)
    )
    assert peek.status_code == 404
    as_admin = await app_client.get("/api/v1/money/balance", headers=bearer(account.admin_key))
    assert as_admin.status_code == 422
    closing = await app_client.post("/api/v1/periods/2018-03/close", headers=bearer(key))
    assert closing.status_code == 403
    running = await account.client.post(
        "/api/v1/periods/2999-01/close", headers=bearer(account.admin_key)
    )
    assert running.status_code == 409 and running.json()["error"] == "conflict"
    assert (
        await account.client.post(
            "/api/v1/periods/2018-13/close", headers=bearer(account.admin_key)
        )
    ).status_code == 422
    await account.close("2018-03")
    before_history = await account.close("2018-01", status=409)
    assert "start after" in before_history["message"]
    nul = await app_client.get("/api/v1/orders", params={"af": "a\x00"}, headers=bearer(key))
    assert nul.status_code == 422
    bad_month = await app_client.get(
        "/api/v1/money/income", params={"month": "2018-1"}, headers=bearer(key)
    )
    assert bad_month.status_code == 422


async def test_racing_closes_credit_once(account: Account) -> None:
    await account.order(at("2018-05-15T10:00:00"), "100.00")
    closes = await asyncio.gather(*(account.close("2018-05") for _ in range(5)))
    assert sum(len(c["closed"]) for c in closes) == 1
    assert sum(c["already_closed"] for c in closes) == 4
    assert await account.balance() == D("8.00") == await account.ledger_sum()


async def test_a_close_attributes_orders_whose_click_came_late(account: Account) -> None:
    placed = at("2018-07-15T10:00:00")
    click_id = uuid7_at(placed - timedelta(minutes=2))
    result = await account.report(
        "LATE-" + uuid.uuid4().hex[:8], str(click_id), placed, "50.00", "completed"
    )
    assert result["attribution"] == "unattributed"
    async with account.pool.acquire() as conn:
        await add_click(conn, account.link, placed - timedelta(minutes=2), click_id=click_id)
    closed = (await account.close("2018-07"))["closed"][0]
    assert closed["orders_credited"] == 1 and closed["credited"] == "4.00"
