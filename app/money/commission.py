"""Per-order commission: exact decimal arithmetic, rounded once, per order, to the cent.

The rounding rule: ``amount * total rate / 100``, computed exactly, then rounded to the cent
half up (ROUND_HALF_UP: 0.005 becomes 0.01). Rounding happens per order, never on a sum, so
an order's commission never depends on which other orders share its period; a period's
total is the sum of its orders' rounded commissions.

The base rate is the plan's, or a payout override's (``overrides.base_rate``: the most
specific entry wins, an override at equal specificity); the incentive bonus is always the
plan's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, localcontext

from app.money.overrides import OverrideVersion, RateSource, base_rate
from app.money.plan import Plan, RateParts

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
# Wide enough that amount * rate is exact: 16 digits of dollars and cents times a
# percentage with four places stays far below 40 significant digits.
_EXACT = Context(prec=40, traps=[Inexact])


def to_cents(value: Decimal) -> Decimal:
    """Round half up to the cent."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def is_cents(value: Decimal) -> bool:
    """A finite amount with at most two decimal places."""
    return value.is_finite() and value == value.quantize(CENT)


def commission(amount: Decimal, rate_percent: Decimal) -> Decimal:
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not an order amount: {amount}")
    with localcontext(_EXACT):
        exact = amount * rate_percent / 100
    return to_cents(exact)


@dataclass(frozen=True)
class OrderCommission:
    rate: RateParts
    amount: Decimal
    source: RateSource = RateSource.plan  # where the base rate came from
    override: OverrideVersion | None = None  # the override version, when from one

    def detail(self) -> dict[str, str | bool | int]:
        """What a ledger credit keeps to explain itself (rates in percent, as text)."""
        found: dict[str, str | bool | int] = {
            "base_rate": str(self.rate.base),
            "new_buyer_rate": self.rate.new_buyer_rate,
            "bonus": str(self.rate.bonus),
            "total_rate": str(self.rate.total),
            "previous_sales": str(self.rate.previous_sales),
            "rate_source": self.source.value,
        }
        if self.override is not None:
            found["override_of"] = self.override.publisher_id  # the publisher or its network
            found["override_from"] = str(self.override.effective_from)
        return found


def order_commission(
    plan: Plan,
    amount: Decimal,
    category: str,
    new_buyer: bool,
    previous_sales: Decimal,
    overrides: Sequence[OverrideVersion] = (),
) -> OrderCommission:
    """An order's commission: its base rate (the plan's, or ``overrides``' in force: the
    publisher's own first, then its network's) plus the plan's incentive bonus for
    ``previous_sales`` (US dollars), on ``amount`` (US dollars), rounded once to the cent."""
    base = base_rate(plan, overrides, category, new_buyer)
    rate = RateParts(base.rate, base.new_buyer_rate, plan.bonus(previous_sales), previous_sales)
    return OrderCommission(rate, commission(amount, rate.total), base.source, base.version)


def credited_commission(
    plan: Plan, amount: Decimal, credited: RateParts, previous_sales: Decimal
) -> OrderCommission:
    """What a credited order is due now: the base rate it was credited at (fixed from its
    credit on, whatever plans or overrides say later) plus the plan's bonus for
    ``previous_sales`` as re-decided, on its current ``amount``."""
    rate = RateParts(
        credited.base, credited.new_buyer_rate, plan.bonus(previous_sales), previous_sales
    )
    return OrderCommission(rate, commission(amount, rate.total))
