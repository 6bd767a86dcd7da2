"""The screening of an order at attribution, once its click is found and the attribution
rules accept it (docs/commissions.md, "Order fraud rules" and "Caps").

In this order: an order on a flagged click is disqualified (or held for review, when the
operator switched that fraud rule on); an order a fraud rule suspects is held for review
(``fraud.py``); an order over one of its publisher's order or commission caps is declined
(``app/caps/orders.py``, which counts it against its caps when it passes); any other order is
attributed. Only attributed orders earn (every money query reads ``attribution =
'attributed'``). An order approved on review goes through the caps then, as if attributed
at that moment.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from app.core.db import Conn
from app.orders.candidate import Candidate
from app.orders.fraud import FraudRules


class Decision(StrEnum):
    attribute = "attributed"
    disqualify = "disqualified"
    hold = "held"
    decline = "declined"


@dataclass(frozen=True)
class Verdict:
    """What becomes of a candidate: ``rule`` names the fraud rule that held it, ``cap_id``
    the cap that declined it."""

    decision: Decision
    rule: str | None = None
    cap_id: int | None = None


# The cap that declines the candidate, or None after counting it against every cap it falls
# under (in the caller's transaction: a rollback gives the room back).
CapCheck = Callable[[Conn, Candidate], Awaitable[int | None]]


async def no_caps(_conn: Conn, _candidate: Candidate) -> int | None:
    """The cap check of a process that enforces none (tests of other rules)."""
    return None


@dataclass(frozen=True)
class Screening:
    """The fraud rules in force (settings) and the cap check (``app.caps.orders``)."""

    fraud: FraudRules = field(default_factory=FraudRules)
    caps: CapCheck = no_caps


NO_SCREENING = Screening()


async def screen(conn: Conn, candidate: Candidate, screening: Screening) -> Verdict:
    """The verdict on ``candidate`` (see the module's docstring for the order of the rules)."""
    if candidate.flags:
        if screening.fraud.hold_flagged:
            return Verdict(Decision.hold, rule="flagged_click")
        return Verdict(Decision.disqualify)
    rule = await screening.fraud.hold_rule(conn, candidate)
    if rule is not None:
        return Verdict(Decision.hold, rule=rule)
    return await admit(conn, candidate, screening)


async def admit(conn: Conn, candidate: Candidate, screening: Screening) -> Verdict:
    """Attribute ``candidate`` unless a cap declines it (also what an approval runs)."""
    cap_id = await screening.caps(conn, candidate)
    if cap_id is not None:
        return Verdict(Decision.decline, cap_id=cap_id)
    return Verdict(Decision.attribute)
