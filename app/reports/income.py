"""The income report: a publisher's money by calculation period (10th to 9th, in the period
time zone).

For each period: the orders placed in it (attributed ones, whatever became of them) and
their amount; for a closed period, what its close booked (the completed sales it credited,
credits, chargebacks); for a period not closed yet, the sales it would close with now and
the estimated commission of the orders placed in it (``money.earnings``). The CSV's day
columns name the period time zone (``first_day_asia_shanghai``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from app.core.db import Conn
from app.money import closing, earnings
from app.money.commission import ZERO
from app.money.periods import Period, periods_between
from app.reports.csvout import Cell, zoned

MAX_PERIODS = 36

DAY_COLUMNS = ("first_day", "last_day")  # named after the zone: ``columns``
OTHER_COLUMNS = (
    "state",
    "orders",
    "order_amount",
    "completed_sales",
    "credited",
    "charged_back",
    "net",
    "estimated_commission",
)


def columns(tz: tzinfo) -> tuple[str, ...]:
    """The CSV's header: ``period``, its first and last days named after ``tz``, the rest."""
    return ("period", *(zoned(name, tz) for name in DAY_COLUMNS), *OTHER_COLUMNS)


@dataclass(frozen=True)
class PeriodIncome:
    period: Period
    closed: bool
    running: bool  # the period has not ended yet
    closed_at: datetime | None
    orders: int  # attributed orders placed in the period
    order_amount: Decimal
    completed_sales: Decimal  # credited by its close; if open, what it would credit now
    credited: Decimal
    charged_back: Decimal
    estimated_commission: Decimal | None  # open periods: of the orders placed in them

    @property
    def state(self) -> str:
        """``closed``; ``running`` (not ended yet); ``ended`` (ended, not closed yet)."""
        if self.closed:
            return "closed"
        return "running" if self.running else "ended"

    @property
    def net(self) -> Decimal:
        return self.credited + self.charged_back

    def cells(self) -> tuple[Cell, ...]:
        return (
            str(self.period),
            self.period.start_date,
            self.period.last_date,
            self.state,
            self.orders,
            self.order_amount,
            self.completed_sales,
            self.credited,
            self.charged_back,
            self.net,
            self.estimated_commission,
        )


async def income_by_period(
    conn: Conn, publisher_id: int, first: Period, last: Period, tz: tzinfo, now: datetime
) -> list[PeriodIncome]:
    """``first`` to ``last``, both included, oldest first."""
    closes = {c.period: c for c in await closing.list_closes(conn, publisher_id)}
    estimator = await earnings.CommissionEstimator.load(conn, publisher_id, tz)
    found = []
    for period in periods_between(first, last):
        start, end = period.starts_at(tz), period.ends_at(tz)
        row = await conn.fetchrow(
            """SELECT count(*) AS orders, coalesce(sum(amount), 0.00) AS amount FROM orders
               WHERE publisher_id = $1 AND attribution = 'attributed'
                 AND ordered_at >= $2 AND ordered_at < $3""",
            publisher_id,
            start,
            end,
        )
        assert row is not None
        close = closes.get(period)
        if close is not None:
            found.append(
                PeriodIncome(
                    period,
                    True,
                    False,
                    close.closed_at.astimezone(tz),
                    row["orders"],
                    row["amount"],
                    close.sales,
                    close.credited,
                    close.charged_back,
                    None,
                )
            )
            continue
        projected = await earnings.projected_sales(conn, publisher_id, period, tz)
        _, _, estimated, _ = await earnings.estimate_placed(
            conn, publisher_id, start, end, tz, now, estimator
        )
        found.append(
            PeriodIncome(
                period,
                False,
                end > now,
                None,
                row["orders"],
                row["amount"],
                projected,
                ZERO,
                ZERO,
                estimated,
            )
        )
    return found


def default_periods(now: datetime, tz: tzinfo, count: int = 12) -> tuple[Period, Period]:
    last = Period.containing(now, tz)
    first = last
    for _ in range(count - 1):
        first = first.previous()
    return first, last
