"""Per-order commission: exact decimal arithmetic, rounded once, per order, to the cent.

The rounding rule: ``amount * total rate / 100``, computed exactly, then rounded to the cent
half up (ROUND_HALF_UP: 0.005 becomes 0.01). Rounding happens per order, never on a sum, so
an order's commission never depends on which other orders share its period; a period's
total is the sum of its orders' rounded commissions.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal, Inexact, localcontext

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

    def detail(self) -> dict[str, str | bool]:
        """What a ledger credit keeps to explain itself."""
        return {
            "base_rate": str(self.rate.base),
            "new_buyer_rate": self.rate.new_buyer_rate,
            "bonus": str(self.rate.bonus),
            "total_rate": str(self.rate.total),
            "previous_sales": str(self.rate.previous_sales),
        }


def order_commission(
    plan: Plan, amount: Decimal, category: str, new_buyer: bool, previous_sales: Decimal
) -> OrderCommission:
    rate = plan.rate(category, new_buyer, previous_sales)
    return OrderCommission(rate, commission(amount, rate.total))
