"""Per-order commission: exact decimals, rounded half up to the cent, per order."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.money.commission import commission, is_cents, order_commission, to_cents
from app.money.plan import DEFAULT_PLAN_FILE, read_plan_file

D = Decimal
PLAN = read_plan_file(DEFAULT_PLAN_FILE)


@pytest.mark.parametrize(
    ("amount", "rate", "expected"),
    [
        ("19.99", "16", "3.20"),  # 3.1984
        ("0.31", "8", "0.02"),  # 0.0248
        ("0.0625", "8", "0.01"),  # 0.005 exactly: half up
        ("0.06", "8", "0.00"),  # 0.0048
        ("10.00", "8.125", "0.81"),  # 0.8125
        ("400000.00", "8", "32000.00"),
        ("200000.00", "16", "32000.00"),
        ("0", "14", "0.00"),
    ],
)
def test_rounding_half_up_to_the_cent(amount: str, rate: str, expected: str) -> None:
    found = commission(D(amount), D(rate))
    assert found == D(expected)
    assert str(found) == expected


def test_the_worked_example() -> None:
    # US$400,000 of completed sales in the September 2016 period...
    september = order_commission(PLAN, D("400000.00"), "home-garden", False, D(0))
    assert september.rate.total == 8 and september.amount == D("32000.00")
    # ...gives +2% on the next period's orders; new buyers' orders then earn 16%.
    october = order_commission(PLAN, D("200000.00"), "home-garden", True, D("400000.00"))
    assert october.rate.base == 14 and october.rate.bonus == 2
    assert october.rate.total == 16 and october.amount == D("32000.00")
    assert october.detail()["total_rate"] == "16"
    tablets = order_commission(PLAN, D("1000.00"), "computer-office/tablets", True, D(400000))
    assert tablets.rate.total == 10 and tablets.amount == D("100.00")


def test_bad_amounts() -> None:
    with pytest.raises(ValueError):
        commission(D("-1"), D(8))
    with pytest.raises(ValueError):
        commission(D("NaN"), D(8))
    assert is_cents(D("1.20")) and is_cents(D(3)) and not is_cents(D("1.234"))
    assert not is_cents(D("Infinity"))


cents = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False)
rates = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False)


@given(amount=cents, rate=rates)
def test_commission_is_the_exact_product_rounded_once(amount: Decimal, rate: Decimal) -> None:
    found = commission(amount, rate)
    exact = amount * rate / 100  # exact at these sizes with the default 28 digits
    assert is_cents(found)
    assert abs(found - exact) <= D("0.005")
    assert D(0) <= found <= amount
    assert found == to_cents(exact)


@given(amount=cents, low=rates, high=rates)
def test_a_higher_rate_never_pays_less(amount: Decimal, low: Decimal, high: Decimal) -> None:
    low, high = sorted((low, high))
    assert commission(amount, low) <= commission(amount, high)


@given(
    amount=cents,
    sales=st.decimals(min_value=0, max_value=10**8, places=2),
    more=st.decimals(min_value=0, max_value=10**8, places=2),
    new_buyer=st.booleans(),
    category=st.sampled_from(["home-garden", "computer-office/tablets", "toys/dolls"]),
)
def test_more_sales_never_lower_the_rate(
    amount: Decimal, sales: Decimal, more: Decimal, new_buyer: bool, category: str
) -> None:
    before = order_commission(PLAN, amount, category, new_buyer, sales)
    after = order_commission(PLAN, amount, category, new_buyer, sales + more)
    assert before.rate.total <= after.rate.total
    assert before.amount <= after.amount
    assert before.rate.total >= PLAN.minimum_rate
