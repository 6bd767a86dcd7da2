"""Live Order Tracking: one row per order of a publisher, with its times, status, amount,
commission and the tracking strings of the click it came from; streamed from a server-side
cursor, so an export of a million orders holds only one chunk of them in memory.

Days and times are those of the period time zone: the range's days are its days, the times
are shown on its clock, and the time columns name it (``order_time_asia_shanghai``).

The status is the glossary's: ``completed`` (or ``partially_refunded``) only for an order
completed within 60 days of its purchase (``status.completed_in_time``, as every report counts
completed orders); one the merchant reported completed later is ``completed_late``, which
never earns.

The commission column says what the order earns, and ``commission_status`` on what basis;
a credited order's commission is the sum of all its ledger entries (``orders.earned``): the
API's ``commission`` of the order plus its ``charged_back``:

- ``credited``: credited to the balance by a period close (the ledger's amount);
- ``adjusted``: credited, then lowered by partial refunds or changed by incentive
  adjustments: what its ledger entries add up to now;
- ``charged_back``: credited, then taken back (0.00);
- ``estimated``: not credited yet but may still earn: what it earns if it completes in time,
  at the plan and incentive it would be credited at (``money.earnings``);
- ``no_plan``: it may earn, but no commission plan covers its period yet (empty);
- ``none``: it never earns (refunded, invalid, disqualified, held for review, declined by a
  cap, or not completed within 60 days).

Held and declined orders are listed like any other of the publisher's, with ``attribution``
saying so, ``held_rule`` the fraud rule that held it (kept after its review, whose outcome
``review`` gives), ``declined_cap_id`` the cap that declined it (docs/commissions.md, "Order
fraud rules" and "Caps"); their commission is 0.00, ``none``, until an approval attributes
them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from enum import StrEnum
from typing import Any

import asyncpg

from app.core.db import Conn, Pool
from app.money.commission import ZERO
from app.money.earnings import CommissionEstimator
from app.money.overrides_store import credited_rate
from app.orders.earned import order_ledger
from app.orders.status import (
    COMPLETED,
    Attribution,
    OrderStatus,
    can_still_qualify,
    completed_in_time,
)
from app.reports.csvout import Cell, zoned
from app.traffic.days import span_bounds

PREFETCH = 2000

TIME_COLUMNS = ("order_time", "transaction_time")  # named after the zone: ``columns``
OTHER_COLUMNS = (
    "status",
    "amount",
    "currency",
    "commission",
    "commission_status",
    "af",
    "cn",
    "cv",
    "dp",
    "link",
    "category",
    "new_buyer",
    "attribution",
    "held_rule",
    "review",
    "declined_cap_id",
    # Credited orders: the total rate applied, percent, and its base's source (payout
    # overrides, ``money.overrides_store.credited_rate``); empty otherwise.
    "rate",
    "rate_source",
)


def columns(tz: tzinfo) -> tuple[str, ...]:
    """The export's header: ``order_id``, the two times named after ``tz``, the rest."""
    return ("order_id", *(zoned(name, tz) for name in TIME_COLUMNS), *OTHER_COLUMNS)


class ShownStatus(StrEnum):
    """An order's status as reports show it: its ``OrderStatus``, except that an order
    completed more than 60 days after its purchase is ``completed_late``."""

    incomplete = "incomplete"
    completed_payment = "completed_payment"
    completed = "completed"  # within 60 days of the purchase: the glossary's completed order
    partially_refunded = "partially_refunded"  # the same, part of it refunded since
    completed_late = "completed_late"  # completed (or partly refunded) later: never earns
    refunded = "refunded"
    invalid = "invalid"


# The shown status of the row ``o`` of ``orders``.
_COMPLETED = ", ".join(f"'{s.value}'" for s in sorted(COMPLETED))
SHOWN_STATUS = (
    f"CASE WHEN o.status IN ({_COMPLETED}) AND NOT {completed_in_time('o')} "
    f"THEN '{ShownStatus.completed_late.value}' ELSE o.status END"
)


class CommissionStatus(StrEnum):
    """On what basis the ``commission`` column is given."""

    credited = "credited"  # credited by a close, nothing posted for it since
    adjusted = "adjusted"  # credited, then partly refunded or its incentive re-decided
    charged_back = "charged_back"  # credited, then all of it taken back: 0.00
    estimated = "estimated"  # not credited yet, may still earn
    no_plan = "no_plan"  # may earn, no plan covers its period yet: empty
    none = "none"  # never earns: 0.00


class DateBasis(StrEnum):
    order = "order"  # the order time: when the buyer paid
    transaction = "transaction"  # the transaction time: when the order was completed


@dataclass(frozen=True)
class OrderExport:
    """Which orders: a publisher's, by order or transaction date (days in the period time
    zone, both included)."""

    publisher_id: int
    first_day: date
    last_day: date
    basis: DateBasis = DateBasis.order
    statuses: tuple[ShownStatus, ...] = ()
    attributions: tuple[Attribution, ...] = ()  # none: every order of the publisher
    link: str | None = None
    af: str | None = None  # the sub-affiliate tracking id
    cn: str | None = None
    cv: str | None = None
    dp: str | None = None


def _query(export: OrderExport, tz: tzinfo) -> tuple[str, list[Any]]:
    column = "o.ordered_at" if export.basis is DateBasis.order else "o.completed_at"
    start, end = span_bounds(export.first_day, export.last_day, tz)
    params: list[Any] = [export.publisher_id, start, end]
    conditions = ["o.publisher_id = $1", f"{column} >= $2", f"{column} < $3"]
    if export.statuses:
        params.append([s.value for s in export.statuses])
        conditions.append(f"({SHOWN_STATUS}) = ANY(${len(params)}::text[])")
    if export.attributions:
        params.append([a.value for a in export.attributions])
        conditions.append(f"o.attribution = ANY(${len(params)}::text[])")
    for name in ("af", "cn", "cv", "dp"):
        value = getattr(export, name)
        if value is not None:
            params.append(value)
            conditions.append(f"o.{name} = ${len(params)}")
    if export.link is not None:
        params.append(export.link)
        conditions.append(f"o.code = ${len(params)}")
    sql = f"""
        SELECT o.order_ref, o.ordered_at, o.completed_at, o.status, {SHOWN_STATUS} AS shown,
               o.amount, o.currency,
               o.af, o.cn, o.cv, o.dp, o.code, o.category, o.new_buyer, o.attribution,
               o.held_rule, o.review, o.declined_cap_id,
               m.credited, m.charged_back, m.partial_refunds, m.incentive_adjustments, m.total,
               r.applied_rate, r.rate_source
        FROM orders o
        {order_ledger("o")}
        {credited_rate("o")}
        WHERE {" AND ".join(conditions)}
        ORDER BY {column}, o.id"""
    return sql, params


async def _commission(
    row: asyncpg.Record, estimator: CommissionEstimator, now: datetime
) -> tuple[Any, CommissionStatus]:
    if row["credited"] is not None:
        # The sum of all its entries, as ``orders.store`` (and the API) gives it.
        if row["charged_back"] is not None:
            return row["total"], CommissionStatus.charged_back
        if row["partial_refunds"] is not None or row["incentive_adjustments"] is not None:
            return row["total"], CommissionStatus.adjusted
        return row["total"], CommissionStatus.credited
    status = OrderStatus(row["status"])
    if row["attribution"] != Attribution.attributed or not can_still_qualify(
        status, row["ordered_at"], row["completed_at"], now
    ):
        return ZERO, CommissionStatus.none
    estimate = await estimator.commission(
        row["amount"], row["category"], row["new_buyer"], row["ordered_at"]
    )
    if estimate is None:
        return None, CommissionStatus.no_plan
    return estimate, CommissionStatus.estimated


async def _rows(
    conn: Conn, export: OrderExport, tz: tzinfo, now: datetime
) -> AsyncIterator[tuple[Cell, ...]]:
    estimator = await CommissionEstimator.load(conn, export.publisher_id, tz)
    sql, params = _query(export, tz)
    async for row in conn.cursor(sql, *params, prefetch=PREFETCH):
        commission, basis = await _commission(row, estimator, now)
        yield (
            row["order_ref"],
            row["ordered_at"].astimezone(tz),
            None if row["completed_at"] is None else row["completed_at"].astimezone(tz),
            row["shown"],
            row["amount"],
            row["currency"],
            commission,
            basis.value,
            row["af"],
            row["cn"],
            row["cv"],
            row["dp"],
            row["code"],
            row["category"],
            row["new_buyer"],
            row["attribution"],
            row["held_rule"],
            row["review"],
            row["declined_cap_id"],
            row["applied_rate"],
            row["rate_source"],
        )


async def order_rows(
    pool: Pool, export: OrderExport, tz: tzinfo, now: datetime
) -> AsyncIterator[tuple[Cell, ...]]:
    """The export's rows, in the order of the chosen date, from one consistent snapshot
    (a read-only repeatable-read transaction holding one connection while it streams)."""
    async with (
        pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        async for row in _rows(conn, export, tz, now):
            yield row
