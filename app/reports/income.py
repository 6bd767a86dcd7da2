"""The income report: a publisher's money by calculation period (10th to 9th, in the period
time zone).

For each period: the orders placed in it (attributed ones, whatever became of them) and
their amount; for a closed period, what its close booked: the completed sales it credited,
and its ledger entries about orders, kind by kind (credits, chargebacks, partial refunds,
incentive adjustments: ``orders.earned``, the sums every money figure of an order uses), so
that ``net`` is their sum and the nets of all periods add up to the ledger's entries of those
kinds; for a period not closed yet, the sales it would close with now and the estimated
commission of the orders placed in it (``money.earnings``). The CSV's day columns name the
period time zone (``first_day_asia_shanghai``).

Payout overrides: ``rate_source`` says whether the orders placed in a period earn a payout
override's rates (``override``: the publisher's own or its network's is in force in the
period, for the categories it names) or the plan's only (``plan``); ``credited_at_override``
is the part of ``credited`` whose base rate came from an override. The Live Order Tracking
shows each credited order's rate and its source (``orders``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal

from app.core.db import Conn
from app.money import closing, earnings
from app.money.commission import ZERO
from app.money.overrides import RateSource
from app.money.overrides_store import load_override_book
from app.money.periods import Period, periods_between
from app.orders.earned import LEDGER_SUMS, LedgerSums
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
    "partial_refunds",
    "incentive_adjustments",
    "net",
    "estimated_commission",
    # Payout overrides: kept last, so the columns before keep their places.
    "rate_source",
    "credited_at_override",
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
    booked: LedgerSums  # the entries about orders its close posted (none if not closed)
    estimated_commission: Decimal | None  # open periods: of the orders placed in them
    rate_source: RateSource = RateSource.plan  # an override in force for its orders?
    credited_at_override: Decimal = ZERO  # the part of ``credited`` at override rates

    @property
    def state(self) -> str:
        """``closed``; ``running`` (not ended yet); ``ended`` (ended, not closed yet)."""
        if self.closed:
            return "closed"
        return "running" if self.running else "ended"

    @property
    def credited(self) -> Decimal:
        return self.booked.credited

    @property
    def charged_back(self) -> Decimal:
        """Chargebacks (<= 0): orders credited, then taken back whole."""
        return self.booked.charged_back

    @property
    def partial_refunds(self) -> Decimal:
        """(<= 0) what lowered amounts took off credited orders."""
        return self.booked.partial_refunds

    @property
    def incentive_adjustments(self) -> Decimal:
        """(signed) credited orders' incentives re-decided."""
        return self.booked.incentive_adjustments

    @property
    def net(self) -> Decimal:
        """credited + charged_back + partial_refunds + incentive_adjustments."""
        return self.booked.net

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
            self.partial_refunds,
            self.incentive_adjustments,
            self.net,
            self.estimated_commission,
            self.rate_source.value,
            self.credited_at_override,
        )


async def _booked(
    conn: Conn, publisher_id: int, first: Period, last: Period
) -> dict[Period, LedgerSums]:
    """The ledger's entries about orders booked to each period from ``first`` to ``last``
    (a close books its entries to the period it closes), summed by kind."""
    rows = await conn.fetch(
        f"""SELECT l.period_start, {LEDGER_SUMS} FROM ledger l
            WHERE l.publisher_id = $1 AND l.order_id IS NOT NULL
              AND l.period_start >= $2 AND l.period_start <= $3
            GROUP BY l.period_start""",
        publisher_id,
        first.start_date,
        last.start_date,
    )
    return {Period.starting_on(r["period_start"]): LedgerSums.from_row(r) for r in rows}


async def _credited_at_override(
    conn: Conn, publisher_id: int, first: Period, last: Period
) -> dict[Period, Decimal]:
    """The credits booked to each period from ``first`` to ``last`` whose base rate came
    from a payout override (their credit says so: ``rate_source``)."""
    rows = await conn.fetch(
        """SELECT l.period_start, sum(l.amount) AS credited FROM ledger l
           WHERE l.publisher_id = $1 AND l.kind = 'credit'
             AND l.detail ->> 'rate_source' = 'override'
             AND l.period_start >= $2 AND l.period_start <= $3
           GROUP BY l.period_start""",
        publisher_id,
        first.start_date,
        last.start_date,
    )
    return {Period.starting_on(r["period_start"]): r["credited"] for r in rows}


async def _placed(
    conn: Conn, publisher_id: int, start: datetime, end: datetime
) -> tuple[int, Decimal]:
    """The attributed orders placed in ``[start, end)``: how many, their amount."""
    row = await conn.fetchrow(
        """SELECT count(*) AS orders, coalesce(sum(amount), 0.00) AS amount FROM orders
           WHERE publisher_id = $1 AND attribution = 'attributed'
             AND ordered_at >= $2 AND ordered_at < $3""",
        publisher_id,
        start,
        end,
    )
    assert row is not None
    return row["orders"], row["amount"]


async def income_by_period(
    conn: Conn, publisher_id: int, first: Period, last: Period, tz: tzinfo, now: datetime
) -> list[PeriodIncome]:
    """``first`` to ``last``, both included, oldest first."""
    closes = {c.period: c for c in await closing.list_closes(conn, publisher_id)}
    booked = await _booked(conn, publisher_id, first, last)
    estimator = await earnings.CommissionEstimator.load(conn, publisher_id, tz)
    overrides = await load_override_book(conn, publisher_id)
    at_override = await _credited_at_override(conn, publisher_id, first, last)
    found = []
    for period in periods_between(first, last):
        start, end = period.starts_at(tz), period.ends_at(tz)
        orders, amount = await _placed(conn, publisher_id, start, end)
        close = closes.get(period)
        source = RateSource.override if overrides.for_period(period) else RateSource.plan
        if close is not None:
            found.append(
                PeriodIncome(
                    period,
                    True,
                    False,
                    close.closed_at.astimezone(tz),
                    orders,
                    amount,
                    close.sales,
                    booked.get(period, LedgerSums()),
                    None,
                    source,
                    at_override.get(period, ZERO),
                )
            )
            continue
        projected = await earnings.projected_sales(conn, publisher_id, period, tz)
        _, _, estimated, _ = await earnings.estimate_placed(
            conn, publisher_id, start, end, tz, now, estimator, uncredited_only=True
        )
        found.append(
            PeriodIncome(
                period,
                False,
                end > now,
                None,
                orders,
                amount,
                projected,
                booked.get(period, LedgerSums()),
                estimated,
                source,
                at_override.get(period, ZERO),
            )
        )
    return found


def default_periods(now: datetime, tz: tzinfo, count: int = 12) -> tuple[Period, Period]:
    last = Period.containing(now, tz)
    first = last
    for _ in range(count - 1):
        first = first.previous()
    return first, last
