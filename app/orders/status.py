"""The order status machine and what makes an order qualify. Pure rules.

    incomplete ─▶ completed_payment ─▶ completed ─▶ partially_refunded ─▶ refunded | invalid
         └──────────────┴──────────────────┴───────────────┴───────────────▶ refunded | invalid

A status only ever moves forward (a step may be skipped); refunded and invalid are final.
An update that would move an order backwards, or sideways between the two final statuses,
is stale (it arrived out of order) and changes nothing. ``partially_refunded`` is a completed
order part of which was refunded since: it still earns, on its lowered amount, and may be
lowered again (``app/orders/changes.py`` holds the amount rules).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

# A completed order means the buyer released payment within 60 days of the purchase.
QUALIFYING_DAYS = 60
QUALIFYING_WINDOW = timedelta(days=QUALIFYING_DAYS)


class OrderStatus(StrEnum):
    incomplete = "incomplete"
    completed_payment = "completed_payment"
    completed = "completed"
    partially_refunded = "partially_refunded"  # completed, then part of it refunded
    refunded = "refunded"
    invalid = "invalid"


class Attribution(StrEnum):
    unattributed = "unattributed"  # the click is not known (yet): kept, retried
    attributed = "attributed"  # tied to a clean click, its link and publisher
    disqualified = "disqualified"  # a flagged click, disqualified by an admin, or rejected
    held = "held"  # a fraud rule holds it for review: earns nothing unless approved
    declined = "declined"  # over one of its publisher's order or commission caps


_RANK = {
    OrderStatus.incomplete: 0,
    OrderStatus.completed_payment: 1,
    OrderStatus.completed: 2,
    OrderStatus.partially_refunded: 3,
    OrderStatus.refunded: 4,
    OrderStatus.invalid: 4,
}
FINAL = frozenset({OrderStatus.refunded, OrderStatus.invalid})
# The statuses of a completed order: it earns (on its current amount) if completed in time.
COMPLETED = frozenset({OrderStatus.completed, OrderStatus.partially_refunded})


def advances(current: OrderStatus, incoming: OrderStatus) -> bool:
    """Whether ``incoming`` moves an order in ``current`` forward."""
    return _RANK[incoming] > _RANK[current]


def qualifies(status: OrderStatus, ordered_at: datetime, completed_at: datetime | None) -> bool:
    """Completed (partly refunded or not), and within the qualifying window of the purchase."""
    return (
        status in COMPLETED
        and completed_at is not None
        and completed_at - ordered_at <= QUALIFYING_WINDOW
    )


def completed_in_time(table: str = "o") -> str:
    """``qualifies`` as a SQL condition on a row of ``orders`` (``table``: its name or alias
    in the query): the glossary's *completed order*, released within the qualifying window of
    the purchase. Every query that counts, sums or selects completed orders uses this one."""
    return (
        f"({table}.status IN ({_COMPLETED_SQL}) AND {table}.completed_at IS NOT NULL "
        f"AND {table}.completed_at - {table}.ordered_at <= interval '{QUALIFYING_DAYS} days')"
    )


# In this order, as the partial index orders_publisher_completed states it (migration 022).
_COMPLETED_SQL = "'completed', 'partially_refunded'"


def can_still_qualify(
    status: OrderStatus, ordered_at: datetime, completed_at: datetime | None, now: datetime
) -> bool:
    """Whether an order earns or may yet earn: completed in time, or open within the window."""
    if status in COMPLETED:
        return qualifies(status, ordered_at, completed_at)
    if status in FINAL:
        return False
    return now - ordered_at <= QUALIFYING_WINDOW
