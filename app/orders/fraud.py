"""Order fraud rules: which orders are held for review (docs/commissions.md, "Order fraud
rules"). Each rule is switched on by its setting; all are off by default."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.db import Conn
from app.orders.candidate import Candidate
from app.settings import Settings


@dataclass(frozen=True)
class FraudRules:
    """The rules in force. ``hold_flagged``: an order on a flagged click is held for review
    instead of disqualified."""

    hold_flagged: bool = False

    async def hold_rule(self, conn: Conn, candidate: Candidate) -> str | None:
        """The name of the first rule that holds ``candidate``; None when none does."""
        return None


def fraud_rules(settings: Settings) -> FraudRules:
    """The rules ``settings`` switch on."""
    del settings
    return FraudRules()
