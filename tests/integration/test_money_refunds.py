"""Refunds, partial refunds, late completions and estimates: the money never depends on when a
postback arrives or a period is closed. Through the API, on real Postgres, with the periods
judged in Asia/Shanghai (UTC+8): an order placed at 00:30 on the 10th, Shanghai time, is in
the new period there and still in the old one in UTC.

The rules under test (docs/commissions.md §4, §5): a period's sales are the amounts of the
orders completed in it, at their current amounts, refunded ones excluded, whenever that is
reported; the incentive of the next period's orders rests on them, and a close that finds
them changed re-decides it (``incentive_adjustment`` entries for orders already credited).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from app.core.db import Pool
from app.settings import Settings
from tests.support.accounts import SHANGHAI, Account, Order
from tests.support.orders import at

D = Decimal


def cst(text: str) -> datetime:
    """A Shanghai wall-clock time."""
    return at(text + "+08:00")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"period_timezone": SHANGHAI})


@pytest.fixture
async def accounts(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str
) -> AsyncIterator[list[Account]]:
    yield [await Account.open(app_client, pool, admin_key) for _ in range(3)]


async def september_sales(account: Account) -> tuple[list[Order], Order]:
    """US$400,000 of completed sales in the September 2016 period (10 Sep - 9 Oct, Shanghai
    time), the last order completed on 2 October; and a new buyer's US$1,000.00 order placed
    at 00:30 on 10 October, Shanghai time (still 9 October in UTC), completed on the 12th."""
    orders = [
        await account.completed(cst(f"2016-09-{day}T10:00:00"), "100000.00")
        for day in (12, 20, 28, 30)
    ]
    october = await account.completed(cst("2016-10-10T00:30:00"), "1000.00", new_buyer=True)
    return orders, october


async def test_the_incentive_does_not_depend_on_when_a_refund_is_reported(
    accounts: list[Account],
) -> None:
    """Three publishers, identical facts: one of the four September orders (US$100,000.00,
    completed 2 October) is refunded on 5 October, inside the September period.

    September's completed sales are US$300,000.00 (a refunded purchase is no qualifying
    purchase: agreement 1.12), below the US$400,000 tier: no incentive in October. Right
    figures: September 300,000 x 8 % = 24,000.00; October's new buyer 1,000 x 14 % = 140.00;
    balance **24,140.00** for each, whenever the refund is reported:

    - before September is closed: never credited;
    - after September's close, before October's: charged back (-8,000.00) by October's close,
      which credits October at 14 %;
    - after October's close too: October was credited at 16 % (160.00); November's close
      charges the order back and adjusts October's incentive (-20.00).
    """
    before, between, after = accounts
    refund_at = cst("2016-10-05T15:00:00")
    refunded = {a.publisher_id: (await september_sales(a))[0][-1] for a in accounts}

    await before.report(refunded[before.publisher_id], "refunded", refund_at)
    first = (await before.close("2016-09"))["closed"][0]
    assert (first["sales"], first["credited"]) == ("300000.00", "24000.00")
    for account in (between, after):
        first = (await account.close("2016-09"))["closed"][0]
        assert (first["sales"], first["credited"]) == ("400000.00", "32000.00")

    await between.report(refunded[between.publisher_id], "refunded", refund_at)
    for account in accounts:
        await account.close("2016-10")
    assert await after.balance() == D("32160.00")  # not known yet: 16 % for now

    await after.report(refunded[after.publisher_id], "refunded", refund_at)
    for account in accounts:
        await account.close("2016-11")
        assert await account.balance() == D("24140.00")

    entries = await after.entries()
    adjustment = next(e for e in entries if e["kind"] == "incentive_adjustment")
    assert adjustment["amount"] == "-20.00" and adjustment["period"] == "2016-11"
    assert adjustment["detail"] == {
        **adjustment["detail"],
        "placed_in": "2016-10",
        "sales_of": "2016-09",
        "previous_sales": "300000.00",
        "from_previous_sales": "400000.00",
        "bonus": "0",
        "from_bonus": "2",
        "total_rate": "14",
        "from_rate": "16",
    }
    chargeback = next(e for e in entries if e["kind"] == "chargeback")
    assert chargeback["amount"] == "-8000.00"
    november = (await after.get("/api/v1/money/periods"))[-1]
    assert november == {
        **november,
        "period": "2016-11",
        "charged_back": "-8000.00",
        "adjusted": "-20.00",
        "orders_adjusted": 1,
    }
    # Nothing moves on another close.
    for account in accounts:
        assert (await account.close("2016-11"))["already_closed"] == 1
        assert await account.balance() == D("24140.00")


async def test_a_late_completion_raises_a_closed_periods_sales(accounts: list[Account]) -> None:
    """US$399,000.00 completed in September's period, and a US$1,000.00 order completed on
    8 October (in September's period too): US$400,000.00, the tier. One publisher reports the
    completion in time; the other after October is closed. Both end with September's orders
    at 8 % (32,000.00) and October's new buyer at 16 % (160.00): **32,160.00**."""
    in_time, late = accounts[:2]
    for account in (in_time, late):
        await account.completed(cst("2016-09-12T10:00:00"), "399000.00")
        await account.completed(cst("2016-10-10T00:30:00"), "1000.00", new_buyer=True)
    placed, done = cst("2016-09-25T10:00:00"), cst("2016-10-08T10:00:00")
    await in_time.completed(placed, "1000.00", after=done - placed)
    slow = await late.new_order(placed, "1000.00")
    await late.report(slow, "completed_payment", placed)

    for account in (in_time, late):
        await account.close("2016-09")
        await account.close("2016-10")
    assert await in_time.balance() == D("32160.00")
    assert await late.balance() == D("31920.00") + D("140.00")

    await late.report(slow, "completed", done)  # completed on the 8th, reported now
    november = (await late.close("2016-11"))["closed"][0]
    assert (november["credited"], november["adjusted"]) == ("80.00", "20.00")
    await in_time.close("2016-11")
    assert await late.balance() == await in_time.balance() == D("32160.00")
    periods = {p["period"]: p for p in await late.get("/api/v1/money/periods")}
    assert periods["2016-09"]["sales"] == "399000.00"  # as it was when it was closed
    in_time_periods = {p["period"]: p for p in await in_time.get("/api/v1/money/periods")}
    assert in_time_periods["2016-09"]["sales"] == "400000.00"


async def test_partial_refunds_to_the_cent(accounts: list[Account]) -> None:
    account = accounts[0]
    placed = cst("2017-01-15T10:00:00")
    order = await account.completed(placed, "100.00")
    small = await account.completed(placed, "19.99", new_buyer=True)  # 14 %: 2.7986 -> 2.80
    await account.close("2017-01")
    assert await account.balance() == D("10.80")

    # Lowered twice (the second postback lower still), then a late copy of the first.
    assert (await account.report(order, "partially_refunded", placed + timedelta(days=9), "60.00"))[
        "status"
    ] == "partially_refunded"
    await account.report(order, "partially_refunded", placed + timedelta(days=10), "33.33")
    stale = await account.report(order, "partially_refunded", placed + timedelta(days=9), "60.00")
    assert stale["outcome"] == "unchanged"
    assert (await account.report(order, "completed", placed + timedelta(days=2)))[
        "outcome"
    ] == "unchanged"
    await account.report(small, "partially_refunded", placed + timedelta(days=11), "9.99")

    february = (await account.close("2017-02"))["closed"][0]
    # 100.00 -> 33.33 at 8 %: 8.00 -> 2.6664 -> 2.67 (-5.33); 19.99 -> 9.99 at 14 %:
    # 2.80 -> 1.3986 -> 1.40 (-1.40).
    assert (february["charged_back"], february["orders_charged_back"]) == ("-6.73", 2)
    assert await account.balance() == D("4.07")
    shown = await account.order_money(order)
    assert (shown["amount"], shown["status"], shown["commission"]) == (
        "33.33",
        "partially_refunded",
        "2.67",
    )
    assert shown["charged_back"] is None and shown["qualifies"] is True
    refunds = [e for e in await account.entries() if e["kind"] == "partial_refund"]
    assert [
        (e["amount"], e["detail"]["from_amount"], e["detail"]["order_amount"]) for e in refunds
    ] == [
        ("-5.33", "100.00", "33.33"),
        ("-1.40", "19.99", "9.99"),
    ]
    assert (await account.close("2017-02"))["already_closed"] == 1  # never twice

    # A full refund after partial ones takes back what is left.
    await account.report(order, "refunded", placed + timedelta(days=40), "33.33")
    march = (await account.close("2017-03"))["closed"][0]
    assert (march["charged_back"], march["orders_charged_back"]) == ("-2.67", 1)
    shown = await account.order_money(order)
    assert (shown["commission"], shown["charged_back"]) == ("2.67", "-2.67")
    assert await account.balance() == D("1.40")
    income = await account.get("/api/v1/money/income", month="2017-03")
    assert (income["charged_back"], income["net"]) == ("-6.73", "-6.73")  # February's close


async def test_a_partial_refund_before_the_credit(accounts: list[Account]) -> None:
    account = accounts[0]
    placed = cst("2017-04-15T10:00:00")
    order = await account.completed(placed, "250.00")
    await account.report(order, "partially_refunded", placed + timedelta(days=3), "125.50")
    april = (await account.close("2017-04"))["closed"][0]
    assert (april["sales"], april["credited"], april["charged_back"]) == (
        "125.50",
        "10.04",
        "0.00",
    )
    # Reported first as a partial refund, then its completion: same money.
    other = await account.new_order(placed, "250.00")
    await account.report(other, "partially_refunded", placed + timedelta(days=3), "125.50")
    await account.report(other, "completed", placed + timedelta(days=1))
    assert (await account.order_money(other))["amount"] == "125.50"
    may = (await account.close("2017-05"))["closed"][0]
    assert may["credited"] == "10.04"


async def test_partial_refund_answers(accounts: list[Account]) -> None:
    account = accounts[0]
    placed = datetime.now().astimezone() - timedelta(days=2)
    order = await account.completed(placed, "80.00", after=timedelta(hours=1))
    raised = await account.post(order, "completed", placed + timedelta(hours=1), "80.01")
    assert raised.status_code == 409 and "never raised" in raised.json()["message"]
    whole = await account.post(order, "partially_refunded", placed + timedelta(hours=2), "80.00")
    assert whole.status_code == 409 and "amount: " in whole.json()["message"]
    nothing = await account.post(order, "partially_refunded", placed + timedelta(hours=2), "0.00")
    assert nothing.status_code == 422 and "status 'refunded'" in nothing.json()["message"]
    lowered = await account.post(order, "completed", placed + timedelta(hours=1), "79.00")
    assert lowered.status_code == 409 and "partially_refunded" in lowered.json()["message"]
    shown = await account.order_money(order)
    assert (shown["amount"], shown["status"]) == ("80.00", "completed")  # nothing written
    # The estimate follows a partial refund at once.
    await account.report(order, "partially_refunded", placed + timedelta(hours=3), "50.00")
    month = placed.astimezone().strftime("%Y-%m")
    estimate = await account.get("/api/v1/money/estimate", month=month)
    assert estimate["sales"] == "50.00" and estimate["estimated_commission"] == "4.00"


async def test_a_partial_refund_across_the_tier(accounts: list[Account]) -> None:
    """A partial refund of one cent takes September under the tier: the October order's
    incentive goes, even where the refund's own difference rounds to nothing (99,999.99 x
    8 % = 7,999.9992, still 8,000.00). Reported before September's close or after October's:
    32,000.00 + 140.00 = **32,140.00** both ways."""
    early, late = accounts[:2]
    cut = cst("2016-10-06T09:00:00")
    first = {a.publisher_id: (await september_sales(a))[0][0] for a in (early, late)}
    await early.report(first[early.publisher_id], "partially_refunded", cut, "99999.99")
    for account in (early, late):
        await account.close("2016-10")
    await late.report(first[late.publisher_id], "partially_refunded", cut, "99999.99")
    november = (await late.close("2016-11"))["closed"][0]
    assert (november["charged_back"], november["adjusted"]) == ("0.00", "-20.00")
    await early.close("2016-11")
    assert await early.balance() == await late.balance() == D("32140.00")


async def test_the_estimate_uses_the_sales_the_close_will_use(accounts: list[Account]) -> None:
    """Several ended periods left unclosed: February's period has US$400,000.00 of sales,
    March's none. An order placed in March's period earns +2 % (10.00 on 100.00), one placed
    in April's period does not (8.00): the estimate says so before the catch-up close, and
    the close credits exactly that."""
    account = accounts[0]
    await account.close("2017-01")
    for day in (12, 14, 16, 18):
        await account.completed(cst(f"2017-02-{day}T10:00:00"), "100000.00")
    await account.completed(cst("2017-03-15T10:00:00"), "100.00")
    await account.completed(cst("2017-04-15T10:00:00"), "100.00")
    march = await account.get("/api/v1/money/estimate", month="2017-03")
    april = await account.get("/api/v1/money/estimate", month="2017-04")
    assert (march["orders"], march["estimated_commission"]) == (1, "10.00")
    assert (april["orders"], april["estimated_commission"]) == (1, "8.00")

    closes = (await account.close("2017-04"))["closed"]
    assert [c["period"] for c in closes] == ["2017-02", "2017-03", "2017-04"]
    assert [c["credited"] for c in closes] == ["32000.00", "10.00", "8.00"]
    assert await account.get("/api/v1/money/estimate", month="2017-04") == april


async def test_a_period_before_the_first_close_shows_its_orders_credited_not_also_estimated(
    app_client: httpx.AsyncClient, pool: Pool, admin_key: str
) -> None:
    """The first close (October's) credits September's orders too; September stays unclosed
    in the income report, and its orders are no longer estimated there: each order's money
    appears once."""
    account = await Account.open(app_client, pool, admin_key)
    await account.completed(cst("2016-09-12T10:00:00"), "100.00")
    await account.completed(cst("2016-10-12T10:00:00"), "50.00")
    await account.close("2016-10")
    income = await account.get("/api/v1/reports/income", **{"from": "2016-09", "to": "2016-10"})
    september, october = income["periods"]
    assert (september["period"], september["closed"]) == ("2016-09", False)
    assert D(september["estimated_commission"]) == 0
    total_credited = sum(D(p["credited"]) for p in income["periods"])
    assert total_credited == D("12.00") == await account.balance()  # 8 % of 150.00
    assert october["closed"] is True
