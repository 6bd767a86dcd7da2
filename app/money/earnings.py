"""What a publisher sees of its money besides the ledger: a month's estimated commission
and a month's income (the glossary's "This Month Estimated Commission" and "Income Last
Month"). Months are calendar months in the program's time zone.

- Estimated commission of a month: the commission the orders *placed* in that month will
  earn if they complete, at the rates they would be credited at (an order refunded, invalid,
  disqualified, or past its 60 days without completing counts for nothing), on its current
  amount (a partial refund lowers it). The incentive uses the sales of the period before the
  one the order was placed in, read as the close reads them (``sales``): the same function,
  so the estimate is what the close will credit if nothing changes.
- Income of a month: what the period closes whose period ended in that month booked:
  credits, chargebacks and partial refunds, incentive adjustments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from app.core.db import Conn
from app.money.commission import ZERO, commission
from app.money.overrides import base_rate
from app.money.overrides_store import NO_OVERRIDES, OverrideBook, load_override_book
from app.money.periods import START_DAY, Month, Period
from app.money.plans_store import PlanBook, load_book
from app.money.sales import SalesBook, period_sales
from app.orders.earned import LEDGER_SUMS, LedgerSums
from app.orders.status import OrderStatus, can_still_qualify


@dataclass(frozen=True)
class MonthEstimate:
    month: Month
    orders: int  # orders placed in the month that earn or may still earn
    sales: Decimal
    estimated_commission: Decimal
    orders_without_plan: int


@dataclass(frozen=True)
class MonthIncome:
    month: Month
    credited: Decimal
    charged_back: Decimal  # chargebacks and partial refunds
    adjusted: Decimal = ZERO  # incentive adjustments

    @property
    def net(self) -> Decimal:
        return self.credited + self.charged_back + self.adjusted


async def projected_sales(conn: Conn, publisher_id: int, period: Period, tz: tzinfo) -> Decimal:
    """The sales ``period`` would close with now (``sales``)."""
    return (await period_sales(conn, publisher_id, [period], tz))[period]


class CommissionEstimator:
    """What a publisher's orders would earn if they completed: at the plan of the period
    each was placed in, with the incentive earned by the sales of the period before it, read
    as the close reads them (``sales.SalesBook``). Rates are worked out once per (period,
    category, new buyer) and reused."""

    def __init__(
        self,
        conn: Conn,
        publisher_id: int,
        tz: tzinfo,
        book: PlanBook,
        overrides: OverrideBook = NO_OVERRIDES,
    ) -> None:
        self._tz = tz
        self._book = book
        self._overrides = overrides  # payout overrides: the base rate, as the close takes it
        self._sales = SalesBook(conn, publisher_id, tz)
        self._rates: dict[tuple[int, int, bool, str, bool], Decimal | None] = {}

    @classmethod
    async def load(cls, conn: Conn, publisher_id: int, tz: tzinfo) -> CommissionEstimator:
        overrides = await load_override_book(conn, publisher_id)
        return cls(conn, publisher_id, tz, await load_book(conn), overrides)

    async def commission(
        self, amount: Decimal, category: str, new_buyer: bool, ordered_at: datetime
    ) -> Decimal | None:
        """The order's commission if it completes in time; None when no plan covers the
        period it was placed in."""
        # The rate depends on the period only through the local date (tens of thousands of
        # orders share a few periods): keyed by plain values, cheap to hash.
        local = ordered_at.astimezone(self._tz)
        key = (local.year, local.month, local.day >= START_DAY, category, new_buyer)
        if key not in self._rates:
            placed = Period.containing(ordered_at, self._tz)
            plan = self._book.for_period(placed)
            if plan is None:
                self._rates[key] = None
            else:
                sales = await self._sales.of(placed.previous())
                base = base_rate(plan, self._overrides.for_period(placed), category, new_buyer)
                self._rates[key] = base.rate + plan.bonus(sales)
        rate = self._rates[key]
        return None if rate is None else commission(amount, rate)


async def estimate_placed(
    conn: Conn,
    publisher_id: int,
    start: datetime,
    end: datetime,
    tz: tzinfo,
    now: datetime,
    estimator: CommissionEstimator | None = None,
    *,
    uncredited_only: bool = False,
) -> tuple[int, Decimal, Decimal, int]:
    """Orders placed in ``[start, end)`` that earn or may still earn: how many, their sales,
    their estimated commission, and how many of them no plan covers (not counted). An
    ``estimator`` of the publisher may be shared by several calls. ``uncredited_only``:
    leave out the orders a close has already credited (a period left unclosed whose orders a
    later close credited shows them as credited, not also as estimated)."""
    rows = await conn.fetch(
        """SELECT amount, category, new_buyer, ordered_at, status, completed_at FROM orders o
           WHERE publisher_id = $1 AND attribution = 'attributed'
             AND ordered_at >= $2 AND ordered_at < $3
             AND status NOT IN ('refunded', 'invalid')
             AND NOT ($4 AND EXISTS (
                 SELECT 1 FROM ledger l WHERE l.order_id = o.id AND l.kind = 'credit'))""",
        publisher_id,
        start,
        end,
        uncredited_only,
    )
    if estimator is None:
        estimator = await CommissionEstimator.load(conn, publisher_id, tz)
    orders, sales, estimated, unpriced = 0, ZERO, ZERO, 0
    for row in rows:
        status = OrderStatus(row["status"])
        if not can_still_qualify(status, row["ordered_at"], row["completed_at"], now):
            continue
        earned = await estimator.commission(
            row["amount"], row["category"], row["new_buyer"], row["ordered_at"]
        )
        if earned is None:
            unpriced += 1
            continue
        orders += 1
        sales += row["amount"]
        estimated += earned
    return orders, sales, estimated, unpriced


async def estimate_month(
    conn: Conn, publisher_id: int, month: Month, tz: tzinfo, now: datetime
) -> MonthEstimate:
    found = await estimate_placed(
        conn, publisher_id, month.starts_at(tz), month.ends_at(tz), tz, now
    )
    return MonthEstimate(month, *found)


async def income_month(conn: Conn, publisher_id: int, month: Month, tz: tzinfo) -> MonthIncome:
    row = await conn.fetchrow(
        f"""SELECT {LEDGER_SUMS} FROM ledger l
            WHERE l.publisher_id = $1 AND l.order_id IS NOT NULL
              AND l.effective_at >= $2 AND l.effective_at < $3""",
        publisher_id,
        month.starts_at(tz),
        month.ends_at(tz),
    )
    assert row is not None
    sums = LedgerSums.from_row(row)
    return MonthIncome(
        month,
        sums.credited,
        sums.charged_back + sums.partial_refunds,
        sums.incentive_adjustments,
    )
