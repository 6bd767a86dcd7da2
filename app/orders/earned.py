"""What orders hold in the ledger: the sums of their entries, kind by kind.

An order's money is the sum of its ledger entries (docs/commissions.md §5): its ``credit``,
less ``partial_refund`` entries, plus or minus ``incentive_adjustment`` entries, and the
``chargeback`` that takes all of it back. Every reader of that money (an order through the
API, the Live Order Tracking, the income report, a month's income) sums the entries with
``LEDGER_SUMS``, over whichever rows it selects, so they all show the same figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import asyncpg

ZERO = Decimal("0.00")

# The ledger's kinds about orders, each posted by a period close.
CREDIT = "credit"
CHARGEBACK = "chargeback"
PARTIAL_REFUND = "partial_refund"
INCENTIVE_ADJUSTMENT = "incentive_adjustment"
ORDER_KINDS = (CREDIT, CHARGEBACK, PARTIAL_REFUND, INCENTIVE_ADJUSTMENT)

_KINDS = ", ".join(f"'{kind}'" for kind in ORDER_KINDS)

# Aggregates over ledger rows aliased ``l``: one sum per kind about orders (NULL when there
# is no entry of that kind), and ``total``, the sum of all four (NULL without any).
LEDGER_SUMS = f"""
    sum(l.amount) FILTER (WHERE l.kind = '{CREDIT}') AS credited,
    sum(l.amount) FILTER (WHERE l.kind = '{CHARGEBACK}') AS charged_back,
    sum(l.amount) FILTER (WHERE l.kind = '{PARTIAL_REFUND}') AS partial_refunds,
    sum(l.amount) FILTER (WHERE l.kind = '{INCENTIVE_ADJUSTMENT}') AS incentive_adjustments,
    sum(l.amount) FILTER (WHERE l.kind IN ({_KINDS})) AS total"""


def order_ledger(order: str) -> str:
    """A ``LEFT JOIN LATERAL`` giving, as ``m.*``, the ``LEDGER_SUMS`` of the entries of the
    order row aliased ``order``."""
    return (
        f"LEFT JOIN LATERAL (SELECT {LEDGER_SUMS} FROM ledger l "
        f"WHERE l.order_id = {order}.id) m ON true"
    )


@dataclass(frozen=True)
class LedgerSums:
    """The sums of a set of ledger entries about orders, by kind (0.00 for none)."""

    credited: Decimal = ZERO  # >= 0
    charged_back: Decimal = ZERO  # <= 0
    partial_refunds: Decimal = ZERO  # <= 0
    incentive_adjustments: Decimal = ZERO  # signed

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> LedgerSums:
        """From a row with the columns of ``LEDGER_SUMS``."""

        def value(name: str) -> Decimal:
            found = row[name]
            return ZERO if found is None else Decimal(found)

        return cls(
            value("credited"),
            value("charged_back"),
            value("partial_refunds"),
            value("incentive_adjustments"),
        )

    @property
    def adjustments(self) -> Decimal:
        """Partial refunds and incentive adjustments."""
        return self.partial_refunds + self.incentive_adjustments

    @property
    def net(self) -> Decimal:
        """The sum of every entry: credited + charged back + adjustments."""
        return self.credited + self.charged_back + self.adjustments
