"""What a publisher sees of its money besides the ledger: a month's estimated commission
and a month's income (the glossary's "This Month Estimated Commission" and "Income Last
Month"). Months are calendar months in the program's time zone.

- Estimated commission of a month: the commission the orders *placed* in that month will
  earn if they complete, at the rates they would be credited at (an order refunded, invalid,
  disqualified, or past its 60 days without completing counts for nothing). The incentive
  uses the previous period's closed sales; for a period not closed yet, the sales it would
  close with now.
- Income of a month: the credits and chargebacks booked by the period closes whose period
  ended in that month.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from app.db import Conn
from app.money.closing import closed_sales
from app.money.commission import ZERO, order_commission
from app.money.periods import Month, Period
from app.money.plans_store import load_book
from app.orders.status import QUALIFYING_WINDOW, OrderStatus, can_still_qualify


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
    charged_back: Decimal

    @property
    def net(self) -> Decimal:
        return self.credited + self.charged_back


async def _projected_sales(conn: Conn, publisher_id: int, period: Period, tz: tzinfo) -> Decimal:
    """What ``period`` would close with now: qualifying orders completed by its end and not
    credited yet."""
    total: Decimal = await conn.fetchval(
        """SELECT coalesce(sum(o.amount), 0.00) FROM orders o
           WHERE o.publisher_id = $1 AND o.attribution = 'attributed'
             AND o.status = 'completed' AND o.completed_at < $2
             AND o.completed_at - o.ordered_at <= $3
             AND NOT EXISTS (SELECT 1 FROM ledger l
                             WHERE l.order_id = o.id AND l.kind = 'credit')""",
        publisher_id,
        period.ends_at(tz),
        QUALIFYING_WINDOW,
    )
    return total


async def estimate_month(
    conn: Conn, publisher_id: int, month: Month, tz: tzinfo, now: datetime
) -> MonthEstimate:
    rows = await conn.fetch(
        """SELECT amount, category, new_buyer, ordered_at, status, completed_at FROM orders
           WHERE publisher_id = $1 AND attribution = 'attributed'
             AND ordered_at >= $2 AND ordered_at < $3""",
        publisher_id,
        month.starts_at(tz),
        month.ends_at(tz),
    )
    book = await load_book(conn)
    history = await closed_sales(conn, publisher_id)
    first_closed = min(history, default=None)
    previous_sales: dict[Period, Decimal] = {}
    orders, sales, estimated, unpriced = 0, ZERO, ZERO, 0
    for row in rows:
        status = OrderStatus(row["status"])
        if not can_still_qualify(status, row["ordered_at"], row["completed_at"], now):
            continue
        placed = Period.containing(row["ordered_at"], tz)
        plan = book.for_period(placed)
        if plan is None:
            unpriced += 1
            continue
        before = placed.previous()
        if before not in previous_sales:
            if before in history:
                previous_sales[before] = history[before]
            elif first_closed is not None and before < first_closed:
                previous_sales[before] = ZERO  # before the publisher's history
            else:
                previous_sales[before] = await _projected_sales(conn, publisher_id, before, tz)
        earned = order_commission(
            plan, row["amount"], row["category"], row["new_buyer"], previous_sales[before]
        )
        orders += 1
        sales += row["amount"]
        estimated += earned.amount
    return MonthEstimate(month, orders, sales, estimated, unpriced)


async def income_month(conn: Conn, publisher_id: int, month: Month, tz: tzinfo) -> MonthIncome:
    rows = await conn.fetch(
        """SELECT kind, sum(amount) AS total FROM ledger
           WHERE publisher_id = $1 AND kind IN ('credit', 'chargeback')
             AND effective_at >= $2 AND effective_at < $3
           GROUP BY kind""",
        publisher_id,
        month.starts_at(tz),
        month.ends_at(tz),
    )
    totals = {r["kind"]: r["total"] for r in rows}
    return MonthIncome(month, totals.get("credit", ZERO), totals.get("chargeback", ZERO))
