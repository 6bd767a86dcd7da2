"""What a postback does to an order reported before: its status, completion time and amount.
Pure rules; ``app/orders/store.py`` applies them under the order's row lock.

An order's facts (click, order time, currency, category, new-buyer flag) are fixed by its
first postback. Its amount too, except that a partial refund lowers it:

- ``partially_refunded`` carries the amount left after the refund. It must be below the
  amount the order was reported with (``reported_amount``; 409 otherwise: a partial refund
  never raises an amount, nor leaves it whole) and above 0 (checked at the door: a full
  refund is ``refunded``). It lowers the order's amount when it is below the current one;
  a higher one is an earlier partial refund arriving late and changes nothing. Partial
  refunds may follow one another, each lowering the amount further.
- ``incomplete``, ``completed_payment`` and ``completed`` repeat the amount: the one
  reported, or, after partial refunds, any amount from the current one up to it (a merchant
  may send either). Above the reported amount is a 409 (amounts are never raised); below
  the current one too (only a partial refund lowers an amount).
- ``refunded`` and ``invalid`` end the order whatever its amount: theirs may be anything up
  to the reported amount (what was refunded, what was left, or 0).
- An order first reported as ``partially_refunded``, ``refunded`` or ``invalid`` has no
  reported amount yet: the first postback of another status states it.

The status moves forward only (``status.advances``). A partially refunded order is a
completed one: its completion time is that of its ``completed`` postback; when a partial
refund arrives first, the order counts as completed at the refund's time until the
``completed`` postback says when (the earlier time wins). A final order (refunded, invalid)
changes no more. Whatever the order of arrival, the same postbacks leave the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from app.errors import Conflict
from app.orders.status import COMPLETED, FINAL, OrderStatus, advances

PARTIAL = OrderStatus.partially_refunded


class OrderConflict(Conflict):
    """A postback contradicts the facts an order was first reported with."""


@dataclass(frozen=True)
class OrderState:
    """What postbacks change of an order."""

    status: OrderStatus
    status_at: datetime
    completed_at: datetime | None
    amount: Decimal  # the current amount: lowered by partial refunds
    reported_amount: Decimal | None  # before any refund; None until a postback states it


def first_state(status: OrderStatus, status_at: datetime, amount: Decimal) -> OrderState:
    """The state of an order its first postback creates."""
    if status is PARTIAL and amount <= 0:
        raise ValueError("a partial refund leaves an amount above 0")
    return OrderState(
        status=status,
        status_at=status_at,
        completed_at=status_at if status in COMPLETED else None,
        amount=amount,
        reported_amount=None if status is PARTIAL or status in FINAL else amount,
    )


def apply_report(
    state: OrderState, order_ref: str, status: OrderStatus, status_at: datetime, amount: Decimal
) -> OrderState:
    """The state after a postback of ``status`` (at ``status_at``, with ``amount``); the same
    state when it changes nothing. Raises ``OrderConflict`` for an amount the rules refuse."""
    if status is PARTIAL:
        return _partial_refund(state, order_ref, status_at, amount)
    _check_repeated_amount(state, order_ref, status, amount)
    if state.status in FINAL:
        return state
    new = state
    if state.reported_amount is None and status not in FINAL:  # a refund's amount says little
        new = replace(state, reported_amount=amount)
    if advances(state.status, status):
        completed_at = status_at if status is OrderStatus.completed else state.completed_at
        return replace(new, status=status, status_at=status_at, completed_at=completed_at)
    if (
        status is OrderStatus.completed
        and state.status is PARTIAL
        and state.completed_at is not None
        and status_at < state.completed_at
    ):
        # Completed before the partial refund it was assumed completed at.
        return replace(new, completed_at=status_at)
    return new


def _partial_refund(
    state: OrderState, order_ref: str, status_at: datetime, amount: Decimal
) -> OrderState:
    if amount <= 0:
        raise ValueError("a partial refund leaves an amount above 0")
    reported = state.reported_amount
    if reported is not None and amount >= reported:
        what = "more than" if amount > reported else "the same as"
        raise OrderConflict(
            f"order {order_ref!r}: a partial refund's amount ({amount}) is {what} the amount "
            f"the order was reported with ({reported}); send the amount left after the refund",
            field="amount",
        )
    if state.status in FINAL:
        return state
    new = state
    if amount < state.amount:
        new = replace(new, amount=amount, status=PARTIAL, status_at=status_at)
    elif advances(state.status, PARTIAL):
        new = replace(new, status=PARTIAL, status_at=status_at)
    if new.status is PARTIAL and new.completed_at is None:
        new = replace(new, completed_at=status_at)  # until its completion is reported
    return new


def _check_repeated_amount(
    state: OrderState, order_ref: str, status: OrderStatus, amount: Decimal
) -> None:
    reported = state.reported_amount
    if reported is not None and amount > reported:
        raise OrderConflict(
            f"order {order_ref!r} was reported with amount {reported}; an amount is never "
            f"raised (got {amount})",
            field="amount",
        )
    if amount < state.amount and status not in FINAL:
        raise OrderConflict(
            f"order {order_ref!r} has amount {state.amount}; only a 'partially_refunded' "
            f"postback lowers an amount (got {amount} with another status)",
            field="amount",
        )
