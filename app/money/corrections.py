"""What a period close posts about orders it credited before: chargebacks, partial refunds and
incentive adjustments. Each step compares what an order is due now with what the ledger
holds for it and posts the difference, so running it again posts nothing.

- **Chargeback**: a credited order that no longer qualifies (refunded, invalid,
  disqualified) gives back everything posted for it (its credit, less partial refunds, plus
  or minus incentive adjustments): its entries then sum to zero. Once per order.
- **Partial refund**: a credited order whose amount was lowered since gives back the
  difference, at the rate it was credited at: ``commission(new amount) - posted``.
- **Incentive adjustment**: the incentive (Table 2 bonus) of the orders placed in a period
  rests on the sales of the period before (``sales``). Each decision is kept
  (``period_incentives``); a close re-decides every one whose sales have changed since
  (a refund, a partial refund, a late completion, a late attribution) and, when the bonus
  changes, posts for each order of that period already credited the difference between
  its commission at the new rate and what it was credited.

After these steps every credited order holds in the ledger exactly ``commission(amount,
rate)`` for its current amount and the rate of the incentive decided now, rounded once per
order (``commission.py``): the sum of the orders' commissions is the ledger's. An order's
base rate (the plan's or a payout override's) is the one its credit states: fixed from the
credit on, so no later plan or override recomputes what a closed period credited; only the
incentive and the amount are re-decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any

import asyncpg

from app.core.db import Conn
from app.money.commission import ZERO, commission, credited_commission, order_commission
from app.money.ledger import EntryKind
from app.money.overrides_store import NO_OVERRIDES, OverrideBook
from app.money.periods import Period
from app.money.plan import RateParts
from app.money.plans_store import PlanBook
from app.money.sales import SalesBook
from app.orders.status import completed_in_time
from app.postbacks import outbox
from app.postbacks.events import EventType

_CREDITED = """EXISTS (SELECT 1 FROM ledger c WHERE c.order_id = o.id AND c.kind = 'credit')
    AND NOT EXISTS (SELECT 1 FROM ledger b WHERE b.order_id = o.id AND b.kind = 'chargeback')"""
_QUALIFIES = f"o.attribution = 'attributed' AND {completed_in_time('o')}"
_INSERT = """INSERT INTO ledger (publisher_id, kind, amount, order_id, period_start, plan_from,
                 effective_at, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)"""


@dataclass(frozen=True)
class Posting:
    """One publisher's close of one period, in its transaction: where entries go."""

    conn: Conn
    publisher_id: int
    period: Period  # the period being closed: entries are booked to it
    tz: tzinfo
    book: PlanBook
    sales: SalesBook
    effective_at: datetime  # the period's end: the month the income belongs to
    overrides: OverrideBook = NO_OVERRIDES  # the publisher's and its network's versions

    def row(
        self,
        kind: EntryKind,
        amount: Decimal,
        order_id: int,
        plan_from: Any,
        detail: dict[str, Any],
    ) -> tuple[Any, ...]:
        return (
            self.publisher_id,
            kind.value,
            amount,
            order_id,
            self.period.start_date,
            plan_from,
            self.effective_at,
            json.dumps(detail),
        )

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            await self.conn.executemany(_INSERT, rows)


async def post_chargebacks(posting: Posting) -> tuple[int, Decimal]:
    """Charge back every credited order that no longer qualifies; (orders, total)."""
    rows = await posting.conn.fetch(
        f"""SELECT o.id, o.status, o.attribution,
                   (SELECT sum(l.amount) FROM ledger l WHERE l.order_id = o.id) AS posted
            FROM orders o
            WHERE o.publisher_id = $1 AND {_CREDITED} AND NOT ({_QUALIFIES})
            ORDER BY o.id""",
        posting.publisher_id,
    )
    await posting.insert(
        [
            posting.row(
                EntryKind.chargeback,
                -r["posted"],
                r["id"],
                None,
                {"reason": "disqualified" if r["attribution"] == "disqualified" else r["status"]},
            )
            for r in rows
        ]
    )
    await outbox.emit_commissions(
        posting.conn,
        posting.publisher_id,
        EventType.commission_charged_back,
        [(r["id"], -r["posted"]) for r in rows],
    )
    return len(rows), sum((-r["posted"] for r in rows), ZERO)


@dataclass(frozen=True)
class Decision:
    """An incentive re-decided: the sales it rests on and the bonus, before and now."""

    sales_before: Decimal
    bonus_before: Decimal
    sales: Decimal
    bonus: Decimal


async def redecide_incentives(posting: Posting) -> dict[Period, Decision]:
    """Re-decide the incentive of every period with a decision; return those whose bonus
    changed (their decision is updated)."""
    rows = await posting.conn.fetch(
        """SELECT period_start, previous_sales, bonus FROM period_incentives
           WHERE publisher_id = $1 ORDER BY period_start""",
        posting.publisher_id,
    )
    placed = [Period.starting_on(r["period_start"]) for r in rows]
    await posting.sales.load(p.previous() for p in placed)
    changed: dict[Period, Decision] = {}
    for period, row in zip(placed, rows, strict=True):
        plan = posting.book.for_period(period)
        if plan is None:
            continue
        sales = await posting.sales.of(period.previous())
        bonus = plan.bonus(sales)
        if bonus != row["bonus"]:
            changed[period] = Decision(row["previous_sales"], row["bonus"], sales, bonus)
    await posting.conn.executemany(
        """UPDATE period_incentives SET previous_sales = $3, bonus = $4, decided_at = now()
           WHERE publisher_id = $1 AND period_start = $2""",
        [
            (posting.publisher_id, p.start_date, d.sales, d.bonus)
            for p, d in sorted(changed.items())
        ],
    )
    return changed


async def record_decisions(posting: Posting, placed: set[Period]) -> None:
    """Keep the incentive decided for the periods whose orders were just credited (a period
    decided before keeps its row: ``redecide_incentives`` has brought it up to date)."""
    rows = []
    for period in sorted(placed):
        plan = posting.book.for_period(period)
        if plan is not None:
            sales = await posting.sales.of(period.previous())
            rows.append((posting.publisher_id, period.start_date, sales, plan.bonus(sales)))
    await posting.conn.executemany(
        """INSERT INTO period_incentives (publisher_id, period_start, previous_sales, bonus)
           VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
        rows,
    )


@dataclass
class Posted:
    """What the ledger holds for one credited order."""

    total: Decimal  # the sum of its entries
    amount: Decimal  # the order amount the last entry that states one was worked out on
    rate: Decimal  # and the total rate
    credited: RateParts | None = None  # the base its credit states (bonus left at 0)


def _credited_base(detail: dict[str, Any]) -> RateParts | None:
    """The base rate a credit states (every credit does; None for a detail without one)."""
    if "base_rate" not in detail:
        return None
    zero = Decimal(0)
    return RateParts(Decimal(detail["base_rate"]), bool(detail["new_buyer_rate"]), zero, zero)


async def _posted(conn: Conn, orders: list[asyncpg.Record]) -> dict[int, Posted]:
    entries = await conn.fetch(
        """SELECT order_id, kind, amount, detail FROM ledger WHERE order_id = ANY($1::bigint[])
           ORDER BY order_id, id""",
        [o["id"] for o in orders],
    )
    # Credits made before partial refunds existed do not state their amount: the reported one.
    reported = {
        o["id"]: o["amount"] if o["reported_amount"] is None else o["reported_amount"]
        for o in orders
    }
    found: dict[int, Posted] = {}
    for entry in entries:
        detail = json.loads(entry["detail"])
        posted = found.setdefault(
            entry["order_id"], Posted(ZERO, reported[entry["order_id"]], Decimal(0))
        )
        posted.total += entry["amount"]
        if entry["kind"] == EntryKind.credit:
            posted.credited = _credited_base(detail)
        if "total_rate" in detail:
            posted.rate = Decimal(detail["total_rate"])
            posted.amount = Decimal(detail.get("order_amount", posted.amount))
    return found


async def _orders_to_true_up(posting: Posting, periods: list[Period]) -> list[asyncpg.Record]:
    """Credited orders still qualifying that may be due another amount: partially refunded
    ones, and those placed in ``periods`` (whose incentive changed)."""
    tz = posting.tz
    return await posting.conn.fetch(
        f"""SELECT o.id, o.amount, o.reported_amount, o.category, o.new_buyer, o.ordered_at
            FROM orders o
            WHERE o.publisher_id = $1 AND o.status = 'partially_refunded'
              AND {_QUALIFIES} AND {_CREDITED}
            UNION
            SELECT o.id, o.amount, o.reported_amount, o.category, o.new_buyer, o.ordered_at
            FROM orders o
            JOIN unnest($2::timestamptz[], $3::timestamptz[]) AS p(s, e)
              ON o.ordered_at >= p.s AND o.ordered_at < p.e
            WHERE o.publisher_id = $1 AND {_QUALIFIES} AND {_CREDITED}
            ORDER BY id""",
        posting.publisher_id,
        [p.starts_at(tz) for p in periods],
        [p.ends_at(tz) for p in periods],
    )


async def true_up(
    posting: Posting, changed: dict[Period, Decision]
) -> tuple[tuple[int, Decimal], tuple[int, Decimal]]:
    """Post partial refunds and incentive adjustments; return ((orders, total) of the
    partial refunds, (orders, total) of the adjustments)."""
    orders = await _orders_to_true_up(posting, sorted(changed))
    posted = await _posted(posting.conn, orders)
    rows: list[tuple[Any, ...]] = []
    refunds: list[Decimal] = []
    adjustments: list[Decimal] = []
    for order in orders:
        made = await _order_true_up(posting, order, posted[order["id"]], changed)
        for kind, amount, row in made:
            (refunds if kind is EntryKind.partial_refund else adjustments).append(amount)
            rows.append(row)
    await posting.insert(rows)
    return (len(refunds), sum(refunds, ZERO)), (len(adjustments), sum(adjustments, ZERO))


async def _order_true_up(
    posting: Posting, order: asyncpg.Record, posted: Posted, changed: dict[Period, Decision]
) -> list[tuple[EntryKind, Decimal, tuple[Any, ...]]]:
    placed = Period.containing(order["ordered_at"], posting.tz)
    plan = posting.book.for_period(placed)
    if plan is None:  # credited under a plan, which is frozen from then on: never happens
        return []
    sales = await posting.sales.of(placed.previous())
    if posted.credited is not None:  # the base it was credited at; the bonus re-decided
        due = credited_commission(plan, order["amount"], posted.credited, sales)
    else:
        due = order_commission(plan, order["amount"], order["category"], order["new_buyer"], sales)
    made = []
    total = posted.total
    if order["amount"] < posted.amount:
        part = min(commission(order["amount"], posted.rate) - total, ZERO)
        if part:
            detail = {
                "reason": "partially_refunded",
                "order_amount": str(order["amount"]),
                "from_amount": str(posted.amount),
                "total_rate": str(posted.rate),
            }
            row = posting.row(EntryKind.partial_refund, part, order["id"], None, detail)
            made.append((EntryKind.partial_refund, part, row))
            total += part
    if due.amount != total:
        decision = changed.get(placed)
        detail = {
            "reason": "incentive re-decided",
            "placed_in": str(placed),
            "sales_of": str(placed.previous()),
            "previous_sales": str(sales),
            "bonus": str(due.rate.bonus),
            "total_rate": str(due.rate.total),
            "from_rate": str(posted.rate),
            "order_amount": str(order["amount"]),
        }
        if decision is not None:
            detail["from_previous_sales"] = str(decision.sales_before)
            detail["from_bonus"] = str(decision.bonus_before)
        amount = due.amount - total
        row = posting.row(
            EntryKind.incentive_adjustment, amount, order["id"], plan.effective_from, detail
        )
        made.append((EntryKind.incentive_adjustment, amount, row))
    return made
