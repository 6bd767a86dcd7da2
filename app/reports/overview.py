"""The overview: the glossary's figures for one publisher, and the order counts the
dashboard charts.

- *This Month Estimated Commission*, *Income Last Month*, *Account Balance*: as
  ``/money/summary`` (``money.earnings``, ``money.ledger``; months in the period time zone).
- over a range of days in the period time zone: *clicks* (all, billable, unique, flagged:
  ``app.traffic.counts``), *orders* (attributed orders placed in the range, every status: the
  glossary's All Orders), *completed orders* (those of them completed within 60 days of their
  purchase: ``status.completed_in_time``, the one definition), *total amount* (the amount of
  those orders, refunded and invalid ones left out), *conversion rate* = completed orders /
  billable clicks (flagged clicks are not advertisement clicks: no user reached the shop
  through them).
- over the same range: the orders placed in it that a fraud rule *held* for review, and those
  a cap *declined* (``ScreenedCounts``; docs/commissions.md, "Order fraud rules"). They are
  not among *orders*: neither earns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal

from app.core.db import Conn, Pool
from app.money import earnings, ledger
from app.money.periods import Month
from app.orders.status import completed_in_time
from app.traffic import counts
from app.traffic.days import span_bounds, zone_name

RATE_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class OrderCounts:
    orders: int
    completed: int  # completed within 60 days of the purchase (the glossary's)
    amount: Decimal  # refunded and invalid orders left out


@dataclass(frozen=True)
class ScreenedCounts:
    """Orders placed in a range that screening kept from earning: held for review, declined
    by a cap (those of them approved since are attributed, and counted as orders)."""

    held: int = 0
    declined: int = 0


@dataclass(frozen=True)
class Overview:
    publisher_id: int
    first_day: date
    last_day: date
    tz: tzinfo  # whose days the range's are (the period time zone)
    this_month: Month
    this_month_estimated_commission: Decimal
    last_month: Month
    income_last_month: Decimal
    account_balance: Decimal
    clicks: int
    billable_clicks: int
    unique_clicks: int
    flagged_clicks: int
    orders: OrderCounts
    screened: ScreenedCounts = ScreenedCounts()

    @property
    def conversion_rate(self) -> Decimal | None:
        """Completed orders / billable clicks, as a fraction; None without clicks."""
        return conversion_rate(self.orders.completed, self.billable_clicks)


def conversion_rate(completed: int, billable_clicks: int) -> Decimal | None:
    if billable_clicks <= 0:
        return None
    return (Decimal(completed) / Decimal(billable_clicks)).quantize(
        RATE_PLACES, rounding=ROUND_HALF_UP
    )


_ORDER_COUNTS = f"""
    SELECT {{key}} count(*) AS orders,
           count(*) FILTER (WHERE {completed_in_time("o")}) AS completed,
           coalesce(sum(o.amount) FILTER (WHERE o.status NOT IN ('refunded', 'invalid')), 0.00)
               AS amount
    FROM orders o
    WHERE o.publisher_id = $1 AND o.attribution = 'attributed'
      AND o.ordered_at >= $2 AND o.ordered_at < $3"""


async def order_counts(
    conn: Conn, publisher_id: int, first: date, last: date, tz: tzinfo
) -> OrderCounts:
    """The orders placed on the days ``first`` to ``last`` in ``tz``."""
    start, end = span_bounds(first, last, tz)
    row = await conn.fetchrow(_ORDER_COUNTS.format(key=""), publisher_id, start, end)
    assert row is not None
    return OrderCounts(row["orders"], row["completed"], row["amount"])


_SCREENED = """
    SELECT count(*) FILTER (WHERE o.attribution = 'held') AS held,
           count(*) FILTER (WHERE o.attribution = 'declined') AS declined
    FROM orders o
    WHERE o.publisher_id = $1 AND o.attribution IN ('held', 'declined')
      AND o.ordered_at >= $2 AND o.ordered_at < $3"""


async def screened_counts(
    conn: Conn, publisher_id: int, first: date, last: date, tz: tzinfo
) -> ScreenedCounts:
    """The held and declined orders placed on the days ``first`` to ``last`` in ``tz``."""
    start, end = span_bounds(first, last, tz)
    row = await conn.fetchrow(_SCREENED, publisher_id, start, end)
    assert row is not None
    return ScreenedCounts(row["held"], row["declined"])


async def order_counts_by(
    conn: Conn,
    publisher_id: int,
    first: date,
    last: date,
    tz: tzinfo,
    dimension: counts.Dimension,
) -> dict[date | str | None, OrderCounts]:
    """Order counts per day in ``tz`` of the order time, or per tracking string."""
    start, end = span_bounds(first, last, tz)
    params: list[object] = [publisher_id, start, end]
    if dimension is counts.Dimension.day:
        params.append(zone_name(tz))
        key = "(o.ordered_at AT TIME ZONE $4::text)::date"
    elif dimension is counts.Dimension.link:
        key = "o.code"
    else:
        key = f"o.{dimension.value}"
    sql = _ORDER_COUNTS.format(key=f"{key} AS key,") + " GROUP BY 1"
    rows = await conn.fetch(sql, *params)
    return {r["key"]: OrderCounts(r["orders"], r["completed"], r["amount"]) for r in rows}


async def overview(
    pool: Pool, publisher_id: int, first: date, last: date, tz: tzinfo, now: datetime
) -> Overview:
    """The figures, on two connections at once: the estimate (which works out each order's
    commission) alongside the rest."""
    this_month = Month.containing(now, tz)

    async def estimate() -> earnings.MonthEstimate:
        async with pool.acquire() as conn:
            return await earnings.estimate_month(conn, publisher_id, this_month, tz, now)

    async def the_rest() -> tuple[Decimal, Decimal, counts.TrafficRow, OrderCounts, ScreenedCounts]:
        async with pool.acquire() as conn:
            income = await earnings.income_month(conn, publisher_id, this_month.previous(), tz)
            balance = await ledger.balance(conn, publisher_id)
            query = counts.TrafficQuery(publisher_id, first, last, tz, group_by=())
            counted = counts.totals(await counts.traffic_report(conn, query))
            orders = await order_counts(conn, publisher_id, first, last, tz)
            screened = await screened_counts(conn, publisher_id, first, last, tz)
        return income.net, balance, counted, orders, screened

    estimated, rest = await asyncio.gather(estimate(), the_rest())
    income, balance, counted, orders, screened = rest
    return Overview(
        publisher_id=publisher_id,
        first_day=first,
        last_day=last,
        tz=tz,
        this_month=this_month,
        this_month_estimated_commission=estimated.estimated_commission,
        last_month=this_month.previous(),
        income_last_month=income,
        account_balance=balance,
        clicks=counted.clicks,
        billable_clicks=counted.billable,
        unique_clicks=counted.unique_clicks,
        flagged_clicks=counted.flagged,
        orders=orders,
        screened=screened,
    )
