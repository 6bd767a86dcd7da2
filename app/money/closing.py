"""Closing a calculation period: chargebacks and credits are posted to the ledger.

Closing period P for a publisher, in one transaction holding its account lock:

1. chargebacks: every credited order that has since been refunded, marked invalid or
   disqualified is charged back (its credit, negated): set off against this period's fees;
2. credits: every attributed order completed (within 60 days of purchase) before P's end and
   not yet credited is credited, at the rate of the plan in force in the period it was
   placed in, with the incentive earned by the publisher's sales in the period before that;
3. the close is recorded with P's *completed sales*: the amounts of the orders it credited.
   Those sales set the incentive (Table 2) of the orders placed in the next period.

Closes are idempotent and happen in order: closing P closes every period of the publisher
since its last closed one up to P, each once. A publisher's first close starts its history:
earlier periods count as having no sales. An order reported late is credited by the next
close after it is known; nothing completed is ever skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal

import asyncpg

from app.core.db import Conn, Pool
from app.errors import Conflict
from app.money.commission import ZERO, order_commission
from app.money.ledger import EntryKind, lock_account
from app.money.periods import Period, periods_between
from app.money.plans_store import load_book
from app.orders.attribution import reattribute
from app.orders.status import QUALIFYING_WINDOW


class PeriodNotEnded(Conflict):
    """The period is still running (or in the future)."""


class BeforeHistory(Conflict):
    """The period precedes the publisher's first closed period: it can no longer be closed."""


@dataclass(frozen=True)
class PeriodClose:
    publisher_id: int
    period: Period
    sales: Decimal
    credited: Decimal
    charged_back: Decimal
    orders_credited: int
    orders_charged_back: int
    orders_without_plan: int
    closed_at: datetime


@dataclass
class CloseReport:
    period: Period
    publishers: int = 0
    closed: list[PeriodClose] = field(default_factory=list)  # closed now (with catch-up)
    already_closed: int = 0  # publishers for which the period was closed before
    skipped: int = 0  # publishers whose history starts after the period


def _close(row: asyncpg.Record) -> PeriodClose:
    return PeriodClose(
        publisher_id=row["publisher_id"],
        period=Period.starting_on(row["period_start"]),
        sales=row["sales"],
        credited=row["credited"],
        charged_back=row["charged_back"],
        orders_credited=row["orders_credited"],
        orders_charged_back=row["orders_charged_back"],
        orders_without_plan=row["orders_without_plan"],
        closed_at=row["closed_at"],
    )


async def list_closes(conn: Conn, publisher_id: int) -> list[PeriodClose]:
    rows = await conn.fetch(
        "SELECT * FROM period_closes WHERE publisher_id = $1 ORDER BY period_start",
        publisher_id,
    )
    return [_close(r) for r in rows]


async def closed_sales(conn: Conn, publisher_id: int) -> dict[Period, Decimal]:
    rows = await conn.fetch(
        "SELECT period_start, sales FROM period_closes WHERE publisher_id = $1", publisher_id
    )
    return {Period.starting_on(r["period_start"]): r["sales"] for r in rows}


async def _post_chargebacks(
    conn: Conn, publisher_id: int, period: Period, effective_at: datetime
) -> tuple[int, Decimal]:
    rows = await conn.fetch(
        """SELECT cr.order_id, cr.amount, o.status, o.attribution FROM ledger cr
           JOIN orders o ON o.id = cr.order_id
           WHERE cr.publisher_id = $1 AND cr.kind = 'credit'
             AND (o.status IN ('refunded', 'invalid') OR o.attribution = 'disqualified')
             AND NOT EXISTS (SELECT 1 FROM ledger cb
                             WHERE cb.order_id = cr.order_id AND cb.kind = 'chargeback')
           ORDER BY cr.order_id""",
        publisher_id,
    )
    await conn.executemany(
        """INSERT INTO ledger (publisher_id, kind, amount, order_id, period_start, effective_at,
               detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)""",
        [
            (
                publisher_id,
                EntryKind.chargeback.value,
                -r["amount"],
                r["order_id"],
                period.start_date,
                effective_at,
                json.dumps(
                    {
                        "reason": "disqualified"
                        if r["attribution"] == "disqualified"
                        else r["status"]
                    }
                ),
            )
            for r in rows
        ],
    )
    return len(rows), sum((-r["amount"] for r in rows), ZERO)


async def _post_credits(
    conn: Conn, publisher_id: int, period: Period, tz: tzinfo, effective_at: datetime
) -> tuple[int, Decimal, Decimal, int]:
    """Credit the orders due; return (orders credited, commission, their sales, unpriced)."""
    rows = await conn.fetch(
        """SELECT o.id, o.amount, o.category, o.new_buyer, o.ordered_at FROM orders o
           WHERE o.publisher_id = $1 AND o.attribution = 'attributed'
             AND o.status = 'completed' AND o.completed_at < $2
             AND o.completed_at - o.ordered_at <= $3
             AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.order_id = o.id AND l.kind = 'credit')
           ORDER BY o.id""",
        publisher_id,
        period.ends_at(tz),
        QUALIFYING_WINDOW,
    )
    book = await load_book(conn, lock=True)
    history = await closed_sales(conn, publisher_id)
    credits = []
    sales = ZERO
    unpriced = 0
    for row in rows:
        placed = Period.containing(row["ordered_at"], tz)
        plan = book.for_period(placed)
        if plan is None:
            unpriced += 1  # kept uncredited: a later close credits it once a plan covers it
            continue
        previous_sales = history.get(placed.previous(), ZERO)
        earned = order_commission(
            plan, row["amount"], row["category"], row["new_buyer"], previous_sales
        )
        sales += row["amount"]
        credits.append(
            (
                publisher_id,
                EntryKind.credit.value,
                earned.amount,
                row["id"],
                period.start_date,
                plan.effective_from,
                effective_at,
                json.dumps({**earned.detail(), "placed_in": str(placed)}),
            )
        )
    await conn.executemany(
        """INSERT INTO ledger (publisher_id, kind, amount, order_id, period_start, plan_from,
               effective_at, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)""",
        credits,
    )
    return len(credits), sum((c[2] for c in credits), ZERO), sales, unpriced


async def _close_one(
    conn: Conn, publisher_id: int, period: Period, tz: tzinfo
) -> PeriodClose | None:
    """Close one period; None when a concurrent close got there first."""
    async with conn.transaction():
        await lock_account(conn, publisher_id)
        existing = await conn.fetchval(
            "SELECT 1 FROM period_closes WHERE publisher_id = $1 AND period_start = $2",
            publisher_id,
            period.start_date,
        )
        if existing is not None:
            return None
        # Fees of a period belong to the moment it ends (the month they are income of).
        effective_at = period.ends_at(tz)
        charged, charged_total = await _post_chargebacks(conn, publisher_id, period, effective_at)
        credited, credited_total, sales, unpriced = await _post_credits(
            conn, publisher_id, period, tz, effective_at
        )
        row = await conn.fetchrow(
            """INSERT INTO period_closes (publisher_id, period_start, sales, credited,
                   charged_back, orders_credited, orders_charged_back, orders_without_plan)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
            publisher_id,
            period.start_date,
            sales,
            credited_total,
            charged_total,
            credited,
            charged,
            unpriced,
        )
    assert row is not None
    return _close(row)


async def _last_closed(conn: Conn, publisher_id: int) -> Period | None:
    last: date | None = await conn.fetchval(
        "SELECT max(period_start) FROM period_closes WHERE publisher_id = $1", publisher_id
    )
    return None if last is None else Period.starting_on(last)


async def close_for_publisher(
    conn: Conn, publisher_id: int, period: Period, tz: tzinfo, now: datetime
) -> list[PeriodClose]:
    """Close ``period`` (and any unclosed one before it) for one publisher; return the closes
    made now, empty when the period was closed already."""
    if now < period.ends_at(tz):
        raise PeriodNotEnded(f"period {period} runs until {period.last_date}; close it after")
    last = await _last_closed(conn, publisher_id)
    if last is not None and last >= period:
        exists = await conn.fetchval(
            "SELECT 1 FROM period_closes WHERE publisher_id = $1 AND period_start = $2",
            publisher_id,
            period.start_date,
        )
        if exists is None:
            raise BeforeHistory(f"publisher {publisher_id}'s closed periods start after {period}")
        return []
    todo = [period] if last is None else periods_between(last.next(), period)
    closed = [await _close_one(conn, publisher_id, p, tz) for p in todo]
    return [c for c in closed if c is not None]


async def close_period(
    pool: Pool, period: Period, tz: tzinfo, now: datetime, *, publisher_id: int | None = None
) -> CloseReport:
    """Close ``period`` for one publisher or for all, after attributing the orders whose
    clicks have arrived. Each publisher is closed in transactions of its own."""
    if now < period.ends_at(tz):
        raise PeriodNotEnded(f"period {period} runs until {period.last_date}; close it after")
    async with pool.acquire() as conn:
        await reattribute(conn)
        if publisher_id is None:
            ids = [r["id"] for r in await conn.fetch("SELECT id FROM publishers ORDER BY id")]
        else:
            ids = [publisher_id]
    report = CloseReport(period)
    for pid in ids:
        async with pool.acquire() as conn:
            try:
                closed = await close_for_publisher(conn, pid, period, tz, now)
            except BeforeHistory:
                if publisher_id is not None:
                    raise
                report.skipped += 1
                continue
        report.publishers += 1
        report.closed.extend(closed)
        report.already_closed += not closed
    return report
