"""Closing a calculation period: chargebacks, corrections and credits are posted to the ledger.

Closing period P for a publisher, in one transaction holding its account lock (with every
earlier period of the publisher not closed yet, oldest first, in the same transaction):

1. chargebacks: every credited order that no longer qualifies (refunded, invalid,
   disqualified) gives back what it was credited; partial refunds: every credited order
   whose amount was lowered gives back the difference (``corrections``);
2. incentives re-decided: for every period whose orders were credited with an incentive,
   the sales it rests on are read again; a changed bonus posts an adjustment for each of
   its credited orders (``corrections``);
3. credits: every attributed order completed (within 60 days of purchase) before P's end and
   not yet credited is credited, at the rate of the plan in force in the period it was
   placed in, with the incentive earned by the sales of the period before that
   (``sales``); the base rate is a payout override's where one in force says so
   (``overrides``), the incentive always the plan's;
4. the close is recorded with P's sales (``sales``), which set the incentive of the orders
   placed in the next period.

Closes are idempotent and happen in order: closing P closes every period of the publisher
since its last closed one up to P, each once. Each publisher is closed in a transaction of
its own: a publisher that fails is reported with the reason and left as it was (nothing
half-written), the others are closed, and closing again completes it. Nothing completed is
ever skipped, nothing is credited twice (a unique index per order and kind backs this up).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from decimal import Decimal
from enum import StrEnum

import asyncpg

from app.core.db import Conn, Pool, unreachable
from app.errors import ClickTrackError, Conflict, NotFound
from app.money.commission import ZERO, order_commission
from app.money.corrections import (
    Posting,
    post_chargebacks,
    record_decisions,
    redecide_incentives,
    true_up,
)
from app.money.ledger import EntryKind, lock_account
from app.money.overrides_store import load_override_book
from app.money.periods import Period, periods_between
from app.money.plans_store import load_book
from app.money.sales import SalesBook
from app.orders.attribution import reattribute
from app.orders.screening import NO_SCREENING, Screening
from app.orders.status import completed_in_time
from app.postbacks import outbox
from app.postbacks.events import EventType

log = logging.getLogger(__name__)


class PeriodNotEnded(Conflict):
    """The period is still running (or in the future)."""


class BeforeHistory(Conflict):
    """The period precedes the publisher's first closed period: it can no longer be closed."""


@dataclass(frozen=True)
class PeriodClose:
    publisher_id: int
    period: Period
    sales: Decimal  # the period's sales when it was closed
    credited: Decimal
    charged_back: Decimal  # chargebacks and partial refunds (<= 0)
    adjusted: Decimal  # incentive adjustments (signed)
    orders_credited: int
    orders_charged_back: int  # orders charged back, fully or for a partial refund
    orders_adjusted: int
    orders_without_plan: int
    closed_at: datetime


class Outcome(StrEnum):
    closed = "closed"  # closed now (with any earlier period not closed yet)
    already_closed = "already_closed"
    skipped = "skipped"  # its closed periods start after this one
    failed = "failed"  # nothing written for it; closing again tries again


@dataclass(frozen=True)
class PublisherClose:
    publisher_id: int
    outcome: Outcome
    closes: tuple[PeriodClose, ...] = ()
    reason: str | None = None  # why it failed


@dataclass
class CloseReport:
    period: Period
    results: list[PublisherClose] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome is outcome for r in self.results)

    @property
    def publishers(self) -> int:
        """The publishers the period was closed for, or tried (all but the skipped ones)."""
        return len(self.results) - self.count(Outcome.skipped)

    @property
    def closed(self) -> list[PeriodClose]:
        return [c for r in self.results for c in r.closes]

    @property
    def already_closed(self) -> int:
        return self.count(Outcome.already_closed)

    @property
    def skipped(self) -> int:
        return self.count(Outcome.skipped)

    @property
    def failed(self) -> list[PublisherClose]:
        return [r for r in self.results if r.outcome is Outcome.failed]


# Called in a publisher's close transaction with the closes it made (never empty), so what
# it writes (the audit log's entries) commits or rolls back with them.
CloseHook = Callable[[Conn, list[PeriodClose]], Awaitable[None]]


def _close(row: asyncpg.Record) -> PeriodClose:
    return PeriodClose(
        publisher_id=row["publisher_id"],
        period=Period.starting_on(row["period_start"]),
        sales=row["sales"],
        credited=row["credited"],
        charged_back=row["charged_back"],
        adjusted=row["adjusted"],
        orders_credited=row["orders_credited"],
        orders_charged_back=row["orders_charged_back"],
        orders_adjusted=row["orders_adjusted"],
        orders_without_plan=row["orders_without_plan"],
        closed_at=row["closed_at"],
    )


async def list_closes(conn: Conn, publisher_id: int) -> list[PeriodClose]:
    rows = await conn.fetch(
        "SELECT * FROM period_closes WHERE publisher_id = $1 ORDER BY period_start",
        publisher_id,
    )
    return [_close(r) for r in rows]


async def _post_credits(posting: Posting) -> tuple[int, Decimal, int]:
    """Credit the orders due; return (orders credited, commission, orders without plan)."""
    rows = await posting.conn.fetch(
        f"""SELECT o.id, o.amount, o.category, o.new_buyer, o.ordered_at FROM orders o
            WHERE o.publisher_id = $1 AND o.attribution = 'attributed'
              AND {completed_in_time("o")} AND o.completed_at < $2
              AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.order_id = o.id AND l.kind = 'credit')
            ORDER BY o.id""",
        posting.publisher_id,
        posting.period.ends_at(posting.tz),
    )
    placed_in = {r["id"]: Period.containing(r["ordered_at"], posting.tz) for r in rows}
    await posting.sales.load(p.previous() for p in placed_in.values())
    credits, placed, unpriced, total = [], set(), 0, ZERO
    for row in rows:
        period = placed_in[row["id"]]
        plan = posting.book.for_period(period)
        if plan is None:
            unpriced += 1  # kept uncredited: a later close credits it once a plan covers it
            continue
        sales = await posting.sales.of(period.previous())
        overrides = posting.overrides.for_period(period)  # the publisher's, its network's
        earned = order_commission(
            plan, row["amount"], row["category"], row["new_buyer"], sales, overrides
        )
        detail = {**earned.detail(), "placed_in": str(period), "order_amount": str(row["amount"])}
        credits.append(
            posting.row(EntryKind.credit, earned.amount, row["id"], plan.effective_from, detail)
        )
        placed.add(period)
        total += earned.amount
    await posting.insert(credits)
    # Each credit to the publisher's endpoints, in the close's transaction.
    await outbox.emit_commissions(
        posting.conn,
        posting.publisher_id,
        EventType.commission_credited,
        [(c[3], c[2]) for c in credits],
    )
    await record_decisions(posting, placed)
    return len(credits), total, unpriced


async def _close_one(posting: Posting) -> PeriodClose:
    """Close one period; the caller holds the transaction and the account lock."""
    charged, charged_total = await post_chargebacks(posting)
    changed = await redecide_incentives(posting)
    (refunded, refunded_total), (adjusted, adjusted_total) = await true_up(posting, changed)
    credited, credited_total, unpriced = await _post_credits(posting)
    row = await posting.conn.fetchrow(
        """INSERT INTO period_closes (publisher_id, period_start, sales, credited,
               charged_back, adjusted, orders_credited, orders_charged_back, orders_adjusted,
               orders_without_plan)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *""",
        posting.publisher_id,
        posting.period.start_date,
        await posting.sales.of(posting.period),
        credited_total,
        charged_total + refunded_total,
        adjusted_total,
        credited,
        charged + refunded,
        adjusted,
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
    conn: Conn,
    publisher_id: int,
    period: Period,
    tz: tzinfo,
    now: datetime,
    on_closed: CloseHook | None = None,
) -> list[PeriodClose]:
    """Close ``period`` (and any unclosed one before it) for one publisher, all in one
    transaction; return the closes made now, empty when the period was closed already.
    ``on_closed`` runs in that transaction with the closes made, when there are any."""
    if now < period.ends_at(tz):
        raise PeriodNotEnded(f"period {period} runs until {period.last_date}; close it after")
    async with conn.transaction():
        await lock_account(conn, publisher_id)  # a racing close waits here, then finds it done
        last = await _last_closed(conn, publisher_id)
        if last is not None and last >= period:
            exists = await conn.fetchval(
                "SELECT 1 FROM period_closes WHERE publisher_id = $1 AND period_start = $2",
                publisher_id,
                period.start_date,
            )
            if exists is None:
                raise BeforeHistory(
                    f"publisher {publisher_id}'s closed periods start after {period}"
                )
            return []
        todo = [period] if last is None else periods_between(last.next(), period)
        book = await load_book(conn, lock=True)
        overrides = await load_override_book(conn, publisher_id, lock=True)
        sales = SalesBook(conn, publisher_id, tz)
        closed = []
        for each in todo:
            posting = Posting(
                conn, publisher_id, each, tz, book, sales, each.ends_at(tz), overrides
            )
            closed.append(await _close_one(posting))
        if on_closed is not None:
            await on_closed(conn, closed)
        return closed


_EXPLAINED = (ClickTrackError, asyncpg.PostgresError)


def _reason(exc: Exception) -> str:
    """Why a publisher's close failed, in words for the operator."""
    if isinstance(exc, ClickTrackError):
        return exc.describe()
    if isinstance(exc, asyncpg.PostgresError):
        detail = getattr(exc, "detail", None)
        message = f"the database refused to store the close: {getattr(exc, 'message', exc)}"
        return f"{message} ({detail})" if detail else message
    return f"unexpected error ({type(exc).__name__}: {exc}); the logs have the details"


async def _close_publisher(
    pool: Pool,
    publisher_id: int,
    period: Period,
    tz: tzinfo,
    now: datetime,
    *,
    alone: bool,
    on_closed: CloseHook | None,
) -> PublisherClose:
    async with pool.acquire() as conn:
        try:
            closed = await close_for_publisher(conn, publisher_id, period, tz, now, on_closed)
        except BeforeHistory:
            if alone:
                raise
            return PublisherClose(publisher_id, Outcome.skipped)
        except Exception as exc:  # one publisher's failure never stops the others
            if unreachable(exc):  # the database is gone: so is every other publisher's close
                raise
            reason = _reason(exc)
            log.warning(
                "period close failed for a publisher",
                extra={"publisher_id": publisher_id, "period": str(period), "reason": reason},
                # A bug's traceback goes to the log; a refusal's reason says it all.
                exc_info=None if isinstance(exc, _EXPLAINED) else exc,
            )
            return PublisherClose(publisher_id, Outcome.failed, reason=reason)
    if not closed:
        return PublisherClose(publisher_id, Outcome.already_closed)
    return PublisherClose(publisher_id, Outcome.closed, tuple(closed))


async def close_period(
    pool: Pool,
    period: Period,
    tz: tzinfo,
    now: datetime,
    *,
    publisher_id: int | None = None,
    on_closed: CloseHook | None = None,
    screening: Screening = NO_SCREENING,
) -> CloseReport:
    """Close ``period`` for one publisher or for all, after attributing the orders whose
    clicks have arrived (screened by ``screening``: fraud rules, caps). Each publisher is
    closed in a transaction of its own, and reported: closed, already closed, skipped, or
    failed with the reason (nothing written for it); ``on_closed`` runs in each such
    transaction that closed something. Raises ``PeriodNotEnded``, ``NotFound`` (no such
    publisher)."""
    if now < period.ends_at(tz):
        raise PeriodNotEnded(f"period {period} runs until {period.last_date}; close it after")
    async with pool.acquire() as conn:
        await reattribute(conn, screening=screening)
        if publisher_id is None:
            ids = [r["id"] for r in await conn.fetch("SELECT id FROM publishers ORDER BY id")]
        elif await conn.fetchval("SELECT 1 FROM publishers WHERE id = $1", publisher_id):
            ids = [publisher_id]
        else:
            raise NotFound(f"publisher {publisher_id} does not exist")
    report = CloseReport(period)
    for pid in ids:
        report.results.append(
            await _close_publisher(
                pool, pid, period, tz, now, alone=publisher_id is not None, on_closed=on_closed
            )
        )
    return report


def describe(found: PublisherClose) -> str:
    """One line for an operator: what the close did for one publisher."""
    if found.outcome is Outcome.failed:
        return f"publisher {found.publisher_id}: failed: {found.reason}"
    if found.outcome is not Outcome.closed:
        return f"publisher {found.publisher_id}: {found.outcome.value.replace('_', ' ')}"
    periods = ", ".join(str(c.period) for c in found.closes)
    credited = sum((c.credited for c in found.closes), ZERO)
    charged = sum((c.charged_back for c in found.closes), ZERO)
    adjusted = sum((c.adjusted for c in found.closes), ZERO)
    return (
        f"publisher {found.publisher_id}: closed {periods} (credited {credited}, "
        f"charged back {charged}, incentive adjustments {adjusted})"
    )
