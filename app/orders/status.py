"""The order status machine and what makes an order qualify. Pure rules.

    incomplete ─▶ completed_payment ─▶ completed ─▶ refunded | invalid
         └──────────────┴──────────────────┴──────────▶ refunded | invalid

A status only ever moves forward (a step may be skipped); refunded and invalid are final.
An update that would move an order backwards, or sideways between the two final statuses,
is stale (it arrived out of order) and changes nothing.
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
    refunded = "refunded"
    invalid = "invalid"


class Attribution(StrEnum):
    unattributed = "unattributed"  # the click is not known (yet): kept, retried
    attributed = "attributed"  # tied to a clean click, its link and publisher
    disqualified = "disqualified"  # a flagged click, or disqualified by an admin


_RANK = {
    OrderStatus.incomplete: 0,
    OrderStatus.completed_payment: 1,
    OrderStatus.completed: 2,
    OrderStatus.refunded: 3,
    OrderStatus.invalid: 3,
}
FINAL = frozenset({OrderStatus.refunded, OrderStatus.invalid})


def advances(current: OrderStatus, incoming: OrderStatus) -> bool:
    """Whether ``incoming`` moves an order in ``current`` forward."""
    return _RANK[incoming] > _RANK[current]


def qualifies(status: OrderStatus, ordered_at: datetime, completed_at: datetime | None) -> bool:
    """Completed, and completed within the qualifying window of the purchase."""
    return (
        status is OrderStatus.completed
        and completed_at is not None
        and completed_at - ordered_at <= QUALIFYING_WINDOW
    )


def can_still_qualify(
    status: OrderStatus, ordered_at: datetime, completed_at: datetime | None, now: datetime
) -> bool:
    """Whether an order earns or may yet earn: completed in time, or open within the window."""
    if status is OrderStatus.completed:
        return qualifies(status, ordered_at, completed_at)
    if status in FINAL:
        return False
    return now - ordered_at <= QUALIFYING_WINDOW
