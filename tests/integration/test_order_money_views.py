"""What a publisher reads of its orders' money, through the API on real Postgres, with the
periods in Asia/Shanghai (UTC+8):

- an order's commission is the sum of all its ledger entries (credit, chargeback, partial
  refund, incentive adjustment), the same in the orders API, the Live Order Tracking export
  and the income report, whose per-period columns add up to its net and, over the periods,
  to the ledger's entries of those kinds;
- every date and time of the orders and money answers is on the period time zone's clock,
  with its offset, and the answer names the zone in ``time_zone``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from app.core.db import Pool
from app.settings import Settings
from tests.integration.test_money_withdrawals import Clock, clocked_client
from tests.support.accounts import SHANGHAI, Account, Order, bearer
from tests.support.orders import at

D = Decimal
ORDER_KINDS = ("credit", "chargeback", "partial_refund", "incentive_adjustment")


def cst(text: str) -> datetime:
    """A Shanghai wall-clock time."""
    return at(text + "+08:00")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"period_timezone": SHANGHAI})


@pytest.fixture
async def account(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str
) -> AsyncIterator[Account]:
    yield await Account.open(app_client, pool, admin_key)


async def live_orders(account: Account, **params: str) -> list[dict[str, str]]:
    answer = await account.client.get(
        "/api/v1/reports/orders.csv", params=params, headers=bearer(account.key)
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-time-zone"] == SHANGHAI
    return list(csv.DictReader(io.StringIO(answer.text)))


async def corrected_history(account: Account) -> dict[str, Order]:
    """US$400,000.00 completed in the September 2016 period (four orders of 100,000.00) and
    a new buyer's US$1,000.00 placed at 00:30 on 10 October (Shanghai; 9 October in UTC),
    credited at 8 % and 16 % by September's and October's closes. Then, reported after
    October's close: ``cut`` is partially refunded to 50,000.00 and ``refunded`` refunded,
    both within September's period. November's close charges ``refunded`` back (-8,000.00),
    takes -4,000.00 off ``cut`` and, September's sales now US$250,000.00 (under the tier),
    adjusts the new buyer's order from 16 % to 14 % (-20.00)."""
    september = [
        await account.completed(cst(f"2016-09-{day}T10:00:00"), "100000.00")
        for day in (12, 20, 28, 30)
    ]
    october = await account.completed(cst("2016-10-10T00:30:00"), "1000.00", new_buyer=True)
    await account.close("2016-09")
    await account.close("2016-10")
    cut, refunded, *kept = september
    await account.report(cut, "partially_refunded", cst("2016-10-05T15:00:00"), "50000.00")
    await account.report(refunded, "refunded", cst("2016-10-06T15:00:00"))
    november = (await account.close("2016-11"))["closed"][0]
    assert (november["charged_back"], november["adjusted"]) == ("-12000.00", "-20.00")
    return {"cut": cut, "refunded": refunded, "kept": kept[0], "october": october}


async def test_an_orders_commission_is_the_sum_of_its_ledger_entries(account: Account) -> None:
    orders = await corrected_history(account)
    expected = {  # (API commission, API charged_back, CSV commission, CSV commission status)
        "cut": ("4000.00", None, "4000.00", "adjusted"),
        "refunded": ("8000.00", "-8000.00", "0.00", "charged_back"),
        "kept": ("8000.00", None, "8000.00", "credited"),
        "october": ("140.00", None, "140.00", "adjusted"),
    }
    rows = {
        r["order_id"]: r
        for r in await live_orders(account, **{"from": "2016-09-10", "to": "2016-10-10"})
    }
    assert len(rows) == 5
    entries = await account.entries()
    for name, (commission, charged_back, shown, basis) in expected.items():
        order = orders[name]
        api = await account.order_money(order)
        assert (api["commission"], api["charged_back"]) == (commission, charged_back), name
        row = rows[order.ref]
        assert (row["commission"], row["commission_status"]) == (shown, basis), name
        # The same figure as the ledger's entries of the order, all of them.
        held = sum((D(e["amount"]) for e in entries if e["order_id"] == api["id"]), D("0.00"))
        assert D(row["commission"]) == held == D(commission) + D(charged_back or "0")
    october = rows[orders["october"].ref]
    assert october["order_time_asia_shanghai"] == "2016-10-10 00:30:00"
    assert sum(D(r["commission"]) for r in rows.values()) == await account.balance()


async def test_the_income_report_shows_adjustments_and_adds_up(account: Account) -> None:
    await corrected_history(account)
    report = await account.get("/api/v1/reports/income", **{"from": "2016-09", "to": "2016-11"})
    assert report["time_zone"] == SHANGHAI
    money = ("credited", "charged_back", "partial_refunds", "incentive_adjustments", "net")
    found = {p["period"]: tuple(p[k] for k in money) for p in report["periods"]}
    assert found == {
        "2016-09": ("32000.00", "0.00", "0.00", "0.00", "32000.00"),
        "2016-10": ("160.00", "0.00", "0.00", "0.00", "160.00"),
        "2016-11": ("0.00", "-8000.00", "-4000.00", "-20.00", "-12020.00"),
    }
    for period in report["periods"]:
        parts = [D(period[k]) for k in money[:-1]]
        assert sum(parts) == D(period["net"])
        assert period["closed_at"].endswith("+08:00")
    entries = [e for e in await account.entries() if e["kind"] in ORDER_KINDS]
    for kind, column in zip(ORDER_KINDS, money, strict=False):
        booked = sum((D(e["amount"]) for e in entries if e["kind"] == kind), D("0.00"))
        assert sum(D(p[column]) for p in report["periods"]) == booked, kind
    total = sum(D(p["net"]) for p in report["periods"])
    assert total == sum(D(e["amount"]) for e in entries) == D("20140.00")

    # The CSV: the same columns, and the month's income agrees with the period's net.
    answer = await account.client.get(
        "/api/v1/reports/income.csv",
        params={"from": "2016-09", "to": "2016-11"},
        headers=bearer(account.key),
    )
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [tuple(r[k] for k in money) for r in rows] == list(found.values())
    assert "first_day_asia_shanghai" in rows[0]
    december = await account.get("/api/v1/money/income", month="2016-12")
    assert (december["net"], december["time_zone"]) == ("-12020.00", SHANGHAI)


def local(value: str) -> datetime:
    """An answer's time, which must carry the Shanghai offset."""
    assert value.endswith("+08:00"), value
    return datetime.fromisoformat(value)


async def test_orders_answers_are_in_the_period_time_zone(account: Account) -> None:
    placed = cst("2016-10-10T00:30:00")  # 2016-10-09T16:30:00Z
    order = await account.completed(placed, "100.00", after=timedelta(hours=2))
    page = await account.get("/api/v1/orders")
    assert page["time_zone"] == SHANGHAI
    [listed] = [o for o in page["items"] if o["order_id"] == order.ref]
    assert listed["order_time"] == "2016-10-10T00:30:00+08:00"
    assert listed["completed_time"] == listed["status_time"] == "2016-10-10T02:30:00+08:00"
    for name in ("created_at", "updated_at"):
        local(listed[name])
    one = await account.get(f"/api/v1/orders/{listed['id']}")
    assert one == listed and one["time_zone"] == SHANGHAI
    # An order time filter given in another zone means the same instant.
    since = await account.get("/api/v1/orders", ordered_from="2016-10-09T16:30:00Z")
    assert [o["order_id"] for o in since["items"]] == [order.ref]


async def test_money_answers_are_in_the_period_time_zone(account: Account) -> None:
    await account.completed(cst("2016-10-10T00:30:00"), "100.00")
    await account.close("2016-10")
    [october] = await account.get("/api/v1/money/periods")
    assert (october["period"], october["time_zone"]) == ("2016-10", SHANGHAI)
    local(october["closed_at"])
    ledger = await account.get("/api/v1/money/ledger")
    assert ledger["time_zone"] == SHANGHAI
    [credit] = ledger["items"]
    # Booked at the period's end: 00:00 on 10 November, Shanghai time.
    assert credit["effective_at"] == "2016-11-10T00:00:00+08:00"
    local(credit["created_at"])
    for path, params in (
        ("/api/v1/money/balance", {}),
        ("/api/v1/money/estimate", {"month": "2016-10"}),
        ("/api/v1/money/income", {"month": "2016-11"}),
        ("/api/v1/money/summary", {}),
    ):
        found: dict[str, Any] = await account.get(path, **params)
        assert found["time_zone"] == SHANGHAI, path
    summary = await account.get("/api/v1/money/summary")
    assert summary["this_month"]["time_zone"] == summary["last_month"]["time_zone"] == SHANGHAI
    income = await account.get("/api/v1/money/income", month="2016-11")
    assert income["credited"] == "8.00"  # booked on 10 November, Shanghai time
    closed = await account.close("2016-10")
    assert closed["time_zone"] == SHANGHAI


async def test_withdrawals_are_in_the_period_time_zone(
    settings: Settings, pool: Pool, admin_key: str
) -> None:
    clock = Clock(at("2019-05-06T20:00:00"))  # 7 May, 04:00 in Shanghai
    async with clocked_client(settings, clock) as client:
        account = await Account.open(client, pool, admin_key)
        await account.completed(cst("2019-03-15T10:00:00"), "1000.00")
        await account.close("2019-03")  # 80.00, booked 10 April
        balance = await account.get("/api/v1/money/balance")
        assert (balance["withdrawable"], balance["time_zone"]) == ("80.00", SHANGHAI)
        assert balance["withdrawal"]["next_request_day"] == "2019-05-07"
        made = await client.post(
            "/api/v1/money/withdrawals", json={"amount": "50.00"}, headers=bearer(account.key)
        )
        assert made.status_code == 201, made.text
        withdrawal = made.json()
        assert withdrawal["requested_at"] == "2019-05-07T04:00:00+08:00"
        assert withdrawal["payment_due"] == "2019-06-06"  # 30 days after the 7th (Shanghai)
        assert withdrawal["time_zone"] == SHANGHAI
        clock.now = at("2019-05-08T01:00:00")
        approved = await client.post(
            f"/api/v1/withdrawals/{withdrawal['id']}/approve", headers=bearer(admin_key)
        )
        assert approved.json()["approved_at"] == "2019-05-08T09:00:00+08:00"
        page = await account.get("/api/v1/money/withdrawals")
        assert page["time_zone"] == SHANGHAI
        assert [w["requested_at"] for w in page["items"]] == ["2019-05-07T04:00:00+08:00"]
        assert page["items"][0]["approved_at"] == "2019-05-08T09:00:00+08:00"
