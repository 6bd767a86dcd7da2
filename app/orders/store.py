"""Orders in Postgres: recording a postback, reading orders, disqualifying one.

Recording is idempotent and order-insensitive. The facts of an order (its click, time,
amount, category, new-buyer flag) are fixed by its first postback; a later postback must
repeat them (else it is refused as a conflict) and can only move the status forward (see
``status``); only a partial refund lowers the amount (``changes``). Racing postbacks for
one order serialise on the order's row: the first inserts it, the others wait for that,
lock the row and apply themselves in turn, so the order ends in the most advanced status
reported, whatever the arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import asyncpg

from app.core.db import Conn
from app.orders.attribution import (
    DEFAULT_RULES,
    AttributionRules,
    UnattributedReason,
    attribute_order,
    canonical_click_ref,
    parse_click_ref,
)
from app.orders.changes import OrderConflict, OrderState, apply_report, first_state
from app.orders.earned import order_ledger
from app.orders.screening import NO_SCREENING, Screening
from app.orders.status import Attribution, OrderStatus, qualifies
from app.postbacks import outbox
from app.postbacks.events import OrderFacts, order_events


class RecordOutcome(StrEnum):
    created = "created"
    updated = "updated"  # the status moved forward
    unchanged = "unchanged"  # a repeat, or a stale update that arrived out of order


@dataclass(frozen=True)
class OrderReport:
    """What a postback says about an order."""

    order_ref: str
    click_ref: str
    ordered_at: datetime
    amount: Decimal
    currency: str
    category: str
    new_buyer: bool
    status: OrderStatus
    status_at: datetime


@dataclass(frozen=True)
class Order:
    id: int
    merchant_id: int
    order_ref: str
    click_ref: str
    ordered_at: datetime
    amount: Decimal
    currency: str
    category: str
    new_buyer: bool
    status: OrderStatus
    status_at: datetime
    completed_at: datetime | None
    attribution: Attribution
    disqualified_reason: str | None
    unattributed_reason: UnattributedReason | None  # why, when it is unattributed
    publisher_id: int | None
    code: str | None
    af: str | None
    cn: str | None
    cv: str | None
    dp: str | None
    held_rule: str | None  # the fraud rule that held it (kept after its review)
    held_at: datetime | None
    review: str | None  # 'approved' or 'rejected', once a held order was reviewed
    reviewed_at: datetime | None
    declined_cap_id: int | None  # the cap that declined it
    declined_at: datetime | None
    created_at: datetime
    updated_at: datetime
    commission: Decimal | None  # credited to the publisher (net of adjustments), if it was
    charged_back: Decimal | None  # taken back, when it has been (a negative amount)

    @property
    def qualifies(self) -> bool:
        return self.attribution is Attribution.attributed and qualifies(
            self.status, self.ordered_at, self.completed_at
        )


# A stored reason is final; without one, an unattributed order awaits its click (or has none).
_UNATTRIBUTED_REASON = f"""CASE WHEN o.attribution = 'unattributed' THEN coalesce(
    o.unattributed_reason, CASE WHEN o.click_id IS NULL
    THEN '{UnattributedReason.not_a_click_id.value}'
    ELSE '{UnattributedReason.click_not_found.value}' END) END"""

_SELECT = f"""
    SELECT o.id, o.merchant_id, o.order_ref, o.click_ref, o.ordered_at, o.amount, o.currency,
           o.category, o.new_buyer, o.status, o.status_at, o.completed_at, o.attribution,
           o.disqualified_reason, {_UNATTRIBUTED_REASON} AS unattributed_reason,
           o.publisher_id, o.code, o.af, o.cn, o.cv, o.dp,
           o.held_rule, o.held_at, o.review, o.reviewed_at, o.declined_cap_id, o.declined_at,
           o.created_at, o.updated_at,
           -- Its credit, less partial refunds, plus or minus incentive adjustments; then the
           -- chargeback that takes all of it back (docs/commissions.md §5).
           m.total - coalesce(m.charged_back, 0.00) AS commission, m.charged_back
    FROM orders o
    {order_ledger("o")}"""


def _order(row: asyncpg.Record) -> Order:
    values = dict(row)
    values["status"] = OrderStatus(row["status"])
    values["attribution"] = Attribution(row["attribution"])
    reason = row["unattributed_reason"]
    values["unattributed_reason"] = None if reason is None else UnattributedReason(reason)
    return Order(**values)


def _differences(row: asyncpg.Record, report: OrderReport, click_ref: str) -> list[str]:
    reported: dict[str, Any] = {
        "click_id": (row["click_ref"], click_ref),
        "order_time": (row["ordered_at"], report.ordered_at),
        "currency": (row["currency"], report.currency),
        "category": (row["category"], report.category),
        "new_buyer": (row["new_buyer"], report.new_buyer),
    }
    return [name for name, (stored, sent) in reported.items() if stored != sent]


@dataclass(frozen=True)
class Recorded:
    """What a postback did: the order after it, the outcome, and the order's status before
    it (None for a new order)."""

    order: Order
    outcome: RecordOutcome
    status_before: OrderStatus | None


async def record_postback(
    conn: Conn,
    merchant_id: int,
    report: OrderReport,
    rules: AttributionRules = DEFAULT_RULES,
    screening: Screening = NO_SCREENING,
) -> tuple[Order, RecordOutcome]:
    """``apply_postback``'s order and outcome."""
    recorded = await apply_postback(conn, merchant_id, report, rules, screening)
    return recorded.order, recorded.outcome


async def apply_postback(
    conn: Conn,
    merchant_id: int,
    report: OrderReport,
    rules: AttributionRules = DEFAULT_RULES,
    screening: Screening = NO_SCREENING,
) -> Recorded:
    """Store a merchant's postback in one transaction: a new order, or a status change of
    one reported before (idempotent on (merchant, order ref)); attribute it to its click
    when that click is stored, screened by ``screening`` (fraud rules, caps). Raises
    ``OrderConflict`` when a repeat changes more than the status. A new order keeps ``rules``
    (the attribution window in force) for good."""
    click_ref = canonical_click_ref(report.click_ref)
    ref = parse_click_ref(click_ref)
    first = first_state(report.status, report.status_at, report.amount)
    async with conn.transaction():
        order_id: int | None = await conn.fetchval(
            """INSERT INTO orders (merchant_id, order_ref, click_ref, click_id, click_time,
                   ordered_at, amount, currency, category, new_buyer, status, status_at,
                   completed_at, attribution_window, attribution_skew, reported_amount)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
               ON CONFLICT (merchant_id, order_ref) DO NOTHING RETURNING id""",
            merchant_id,
            report.order_ref,
            click_ref,
            None if ref is None else ref.click_id,
            None if ref is None else ref.made_at,
            report.ordered_at,
            report.amount,
            report.currency,
            report.category,
            report.new_buyer,
            report.status.value,
            report.status_at,
            first.completed_at,
            rules.window,
            rules.skew,
            first.reported_amount,
        )
        outcome, waiting, before = RecordOutcome.created, True, None
        if order_id is None:
            order_id, outcome, waiting, before = await _report_again(
                conn, merchant_id, report, click_ref
            )
        if waiting and ref is not None:
            # Its click may have arrived since the last postback (cheap: one partition).
            await attribute_order(conn, order_id, screening)
        order = await get_order(conn, order_id)
        assert order is not None
        # Its publisher's endpoints hear of it in this transaction (docs/postbacks.md).
        await outbox.emit_order(conn, order.id, order_events(before, _facts(order)))
    return Recorded(order, outcome, None if before is None else OrderStatus(before.status))


def _facts(order: Order) -> OrderFacts:
    return OrderFacts(order.attribution is Attribution.attributed, order.status, order.amount)


async def _report_again(
    conn: Conn, merchant_id: int, report: OrderReport, click_ref: str
) -> tuple[int, RecordOutcome, bool, OrderFacts]:
    """An order reported before: apply what the postback changes (``app/orders/changes.py``:
    its status, completion time, a partial refund's amount), refuse other changes
    (``OrderConflict``). Returns its id, the outcome, whether it still awaits its click, and
    its facts before the change (what its events are decided against)."""
    row = await conn.fetchrow(
        """SELECT id, click_ref, ordered_at, amount, currency, category, new_buyer,
                  status, attribution, status_at, completed_at, reported_amount
           FROM orders WHERE merchant_id = $1 AND order_ref = $2 FOR NO KEY UPDATE""",
        merchant_id,
        report.order_ref,
    )
    assert row is not None  # the conflicting row exists and orders are never deleted
    differing = _differences(row, report, click_ref)
    if differing:
        raise OrderConflict(
            f"order {report.order_ref!r} was first reported with other "
            f"{', '.join(differing)}; only its status (and a partial refund's amount) may change"
        )
    state = OrderState(
        OrderStatus(row["status"]),
        row["status_at"],
        row["completed_at"],
        row["amount"],
        row["reported_amount"],
    )
    new = apply_report(state, report.order_ref, report.status, report.status_at, report.amount)
    outcome = RecordOutcome.unchanged
    if new != state:
        outcome = RecordOutcome.updated
        await conn.execute(
            """UPDATE orders SET status = $2, status_at = $3, completed_at = $4, amount = $5,
                   reported_amount = $6, updated_at = now()
               WHERE id = $1""",
            row["id"],
            new.status.value,
            new.status_at,
            new.completed_at,
            new.amount,
            new.reported_amount,
        )
    attribution = row["attribution"]
    before = OrderFacts(attribution == Attribution.attributed, state.status, state.amount)
    return row["id"], outcome, attribution == Attribution.unattributed, before


async def get_order(conn: Conn, order_id: int) -> Order | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE o.id = $1", order_id)
    return None if row is None else _order(row)


async def orders_by_ref(conn: Conn, order_ref: str, publisher_id: int | None) -> list[Order]:
    """The orders whose merchant's order id is ``order_ref`` (one per merchant at most), of
    ``publisher_id`` (None: any), in id order."""
    rows = await conn.fetch(
        f"{_SELECT} WHERE o.order_ref = $1 AND ($2::int8 IS NULL OR o.publisher_id = $2)"
        " ORDER BY o.id",
        order_ref,
        publisher_id,
    )
    return [_order(row) for row in rows]


@dataclass(frozen=True)
class OrderQuery:
    """Filters of an order listing; None means any."""

    publisher_id: int | None = None
    ordered_from: datetime | None = None
    ordered_before: datetime | None = None
    statuses: tuple[OrderStatus, ...] = ()
    attribution: Attribution | None = None
    af: str | None = None
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None


async def list_orders(
    conn: Conn, query: OrderQuery, *, after: int = 0, limit: int = 50
) -> list[Order]:
    conditions = ["o.id > $1"]
    params: list[Any] = [after]

    def where(sql: str, value: Any) -> None:
        params.append(value)
        conditions.append(sql.replace("?", f"${len(params)}"))

    if query.publisher_id is not None:
        where("o.publisher_id = ?", query.publisher_id)
    if query.ordered_from is not None:
        where("o.ordered_at >= ?", query.ordered_from)
    if query.ordered_before is not None:
        where("o.ordered_at < ?", query.ordered_before)
    if query.statuses:
        where("o.status = ANY(?::text[])", [s.value for s in query.statuses])
    if query.attribution is not None:
        where("o.attribution = ?", query.attribution.value)
    for column in ("af", "cn", "cv", "dp"):
        value = getattr(query, column)
        if value is not None:
            where(f"o.{column} = ?", value)
    params.append(limit)
    rows = await conn.fetch(
        f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY o.id LIMIT ${len(params)}", *params
    )
    return [_order(r) for r in rows]


async def disqualify(conn: Conn, order_id: int, reason: str) -> Order | None:
    """Mark an order disqualified (fraud, invalid traffic); once credited, the next period
    close charges it back. Idempotent: an order already disqualified keeps its first reason.
    A declined order keeps the cap that declined it (``declined_cap_id``, ``declined_at``)."""
    await conn.execute(
        """UPDATE orders SET attribution = 'disqualified', disqualified_reason = $2,
               disqualified_at = now(), updated_at = now()
           WHERE id = $1 AND attribution <> 'disqualified'""",
        order_id,
        reason,
    )
    return await get_order(conn, order_id)
