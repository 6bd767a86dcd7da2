"""What postbacks do to an order reported before: status, completion time, partial refunds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.orders.changes import OrderConflict, OrderState, apply_report, first_state
from app.orders.status import OrderStatus

S = OrderStatus
D = Decimal
T0 = datetime(2016, 9, 20, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


Report = tuple[OrderStatus, datetime, Decimal]


def deliver(reports: list[Report]) -> OrderState:
    (status, at, amount), *rest = reports
    state = first_state(status, at, amount)
    for status, at, amount in rest:
        state = apply_report(state, "A-1", status, at, amount)
    return state


def test_a_partial_refund_lowers_the_amount_and_keeps_the_completion() -> None:
    state = deliver([(S.completed, day(2), D("100.00")), (S.partially_refunded, day(5), D("60"))])
    assert (state.status, state.amount, state.reported_amount) == (
        S.partially_refunded,
        D(60),
        D(100),
    )
    assert state.completed_at == day(2)
    lower = apply_report(state, "A-1", S.partially_refunded, day(6), D("25.50"))
    assert lower.amount == D("25.50") and lower.status_at == day(6)
    # An earlier partial refund arriving late, and the first report again: nothing changes.
    assert apply_report(lower, "A-1", S.partially_refunded, day(5), D("60")) == lower
    assert apply_report(lower, "A-1", S.completed, day(2), D("100.00")) == lower
    refunded = apply_report(lower, "A-1", S.refunded, day(9), D("25.50"))
    assert refunded.status is S.refunded and refunded.amount == D("25.50")
    assert apply_report(refunded, "A-1", S.partially_refunded, day(10), D("1")) == refunded


@pytest.mark.parametrize(
    ("status", "amount", "words"),
    [
        (S.partially_refunded, D("100.01"), "more than"),
        (S.partially_refunded, D("100.00"), "the same as"),
        (S.completed, D("100.01"), "never raised"),
        (S.completed, D("99.99"), "only a 'partially_refunded' postback lowers"),
    ],
)
def test_refused_amounts(status: OrderStatus, amount: Decimal, words: str) -> None:
    state = first_state(S.completed, day(2), D("100.00"))
    with pytest.raises(OrderConflict) as refused:
        apply_report(state, "A-1", status, day(3), amount)
    assert words in refused.value.message and refused.value.field == "amount"


def test_after_a_partial_refund_either_amount_may_be_repeated() -> None:
    state = deliver([(S.completed, day(2), D("100")), (S.partially_refunded, day(4), D("70"))])
    for amount in (D("70"), D("85"), D("100")):
        assert apply_report(state, "A-1", S.completed, day(2), amount) == state
    with pytest.raises(OrderConflict):
        apply_report(state, "A-1", S.completed, day(2), D("69.99"))
    # A refund ends the order whatever amount it states (what was refunded, what was left).
    for amount in (D("0"), D("30"), D("70"), D("100")):
        assert apply_report(state, "A-1", S.refunded, day(5), amount).status is S.refunded
    with pytest.raises(OrderConflict):
        apply_report(state, "A-1", S.refunded, day(5), D("100.01"))


def test_a_partial_refund_reported_first() -> None:
    state = first_state(S.partially_refunded, day(6), D("40"))
    assert state.reported_amount is None and state.completed_at == day(6)
    # The completion arrives late: its amount states the reported amount, its time wins.
    done = apply_report(state, "A-1", S.completed, day(3), D("100"))
    assert (done.status, done.amount, done.reported_amount) == (S.partially_refunded, D(40), D(100))
    assert done.completed_at == day(3)
    with pytest.raises(OrderConflict):
        apply_report(done, "A-1", S.partially_refunded, day(7), D("100"))


def test_a_partial_refund_before_completion_counts_the_order_completed() -> None:
    state = deliver(
        [(S.completed_payment, day(1), D("50")), (S.partially_refunded, day(4), D("20"))]
    )
    assert state.status is S.partially_refunded and state.completed_at == day(4)


def test_zero_is_no_partial_refund() -> None:
    with pytest.raises(ValueError):
        first_state(S.partially_refunded, day(1), D("0"))


@st.composite
def histories(draw: st.DrawFn) -> list[Report]:
    """The postbacks of one order, consistent with one another, in the order they happened."""
    amount = draw(st.decimals(min_value=1, max_value=1000, places=2))
    completed = day(draw(st.integers(1, 30)))
    reports: list[Report] = [(S.incomplete, T0, amount), (S.completed, completed, amount)]
    left, at = amount, completed
    for cut in draw(st.lists(st.decimals(min_value="0.01", max_value=1, places=2), max_size=3)):
        lowered = (left * (1 - cut)).quantize(D("0.01"))
        if D("0.01") <= lowered < left:
            at += timedelta(days=draw(st.integers(0, 5)))
            reports.append((S.partially_refunded, at, lowered))
            left = lowered
    if draw(st.booleans()):
        reports.append((draw(st.sampled_from([S.refunded, S.invalid])), at, left))
    return reports


@given(reports=histories(), data=st.data())
def test_any_arrival_order_leaves_the_same_order(
    reports: list[Report], data: st.DataObject
) -> None:
    arrived = data.draw(st.permutations(reports))
    in_order, shuffled = deliver(reports), deliver(arrived)  # never a conflict
    finals = {S.refunded, S.invalid}
    assert (shuffled.status in finals) == (in_order.status in finals)
    if in_order.status not in finals:  # a final order earns nothing, whatever else it says
        assert shuffled == in_order
