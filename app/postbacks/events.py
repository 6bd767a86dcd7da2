"""The events a publisher's endpoints may subscribe to, and which ones a change of an order
makes. Pure rules; ``app/postbacks/outbox.py`` writes them.

An order is told to its publisher only once it is attributed (before that it has none):

- ``order_attributed``: the order was tied to a clean click (its first postback, a later
  one, a reattribution, a period close's attribution pass).
- ``order_completed``, ``order_partially_refunded``, ``order_refunded``: an attributed
  order's status moved there (a partial refund: also each further lowering of its amount);
  an order attributed already in one of these statuses gets it with ``order_attributed``.
- ``commission_credited``, ``commission_charged_back``: a period close credited the order,
  or took its commission back (``app/money/closing.py``, ``corrections.py``).
- ``test``: sent by ``POST /api/v1/postbacks/endpoints/{id}/test``, to that endpoint only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class EventType(StrEnum):
    order_attributed = "order_attributed"
    order_completed = "order_completed"
    order_partially_refunded = "order_partially_refunded"
    order_refunded = "order_refunded"
    commission_credited = "commission_credited"
    commission_charged_back = "commission_charged_back"
    test = "test"


# What an endpoint may subscribe to (``test`` goes to the endpoint asked, whatever it wants).
SUBSCRIBABLE = tuple(e for e in EventType if e is not EventType.test)

# The order status (``app/orders/status.py``'s values) each status event reports.
_STATUS_EVENTS = {
    "completed": EventType.order_completed,
    "partially_refunded": EventType.order_partially_refunded,
    "refunded": EventType.order_refunded,
}


@dataclass(frozen=True)
class OrderFacts:
    """What the events of an order depend on, before or after a change."""

    attributed: bool
    status: str  # an ``OrderStatus`` value
    amount: Decimal


def order_events(before: OrderFacts | None, after: OrderFacts) -> list[EventType]:
    """The events a change from ``before`` (None: the order is new) to ``after`` makes, in
    the order they happened."""
    if not after.attributed:
        return []
    events: list[EventType] = []
    newly = before is None or not before.attributed
    if newly:
        events.append(EventType.order_attributed)
    status_event = _STATUS_EVENTS.get(after.status)
    if status_event is None:
        return events
    if newly or before is None:
        events.append(status_event)
    elif before.status != after.status or (
        status_event is EventType.order_partially_refunded and after.amount < before.amount
    ):
        events.append(status_event)
    return events
