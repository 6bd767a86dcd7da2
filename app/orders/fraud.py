"""Order fraud rules: which orders are held for review (docs/commissions.md, "Order fraud
rules"). Each rule is switched on by its setting; all are off by default.

A rule judges a candidate (``candidate.py``) against the orders already tied to a click:
those ``attributed``, ``held`` or ``declined`` (each carries the ``session_id`` and
``click_ip`` its click stored, migration 034). Unattributed orders have no click to count by;
disqualified ones are already out of the program, so a rejected order, a flagged click's order
or an admin's disqualification never pushes a session towards a hold. The order being judged
is not updated yet when its rules run: the counts are of the others, plus one.

The rules are checked in this order, the first that matches naming the hold:

- ``click_to_order_too_fast``: ordered less than ``min_click_to_order`` after its click
  (an order "before" its click, within the clock tolerance, is faster than any);
- ``too_many_orders_per_session``: more than ``max_orders_per_session`` orders from the
  click's session placed in the window before this one (``orders_window``, this order's
  time included), any merchant;
- ``too_many_orders_per_address``: the same for the click's address, as the click stored it
  (truncated or hashed per ``CLICKTRACK_IP_MODE``: one value may stand for a network);
- ``repeat_new_buyer``: a new-buyer order from a session that already bought from the same
  merchant (an order placed no later than this one).

``flagged_click`` (an order on a flagged click, held instead of disqualified) is applied by
``screening.py`` before these, with ``hold_flagged``.

Exactness under concurrency: two orders of one session attributed at once would each count
only the other's committed rows and could both pass. Each rule reading other orders takes a
transaction-level advisory lock on its key first (the session, then the address: always in
that order), so the transactions judging orders of one session or address take turns, and
each counts every order decided before it. The locks are released at commit or rollback.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from app.core.db import Conn
from app.orders.candidate import Candidate
from app.settings import Settings


class FraudRule(StrEnum):
    """The names a held order records in ``held_rule`` (stable: reports and filters use them)."""

    click_to_order_too_fast = "click_to_order_too_fast"
    too_many_orders_per_session = "too_many_orders_per_session"
    too_many_orders_per_address = "too_many_orders_per_address"
    flagged_click = "flagged_click"
    repeat_new_buyer = "repeat_new_buyer"


# The orders a rule counts (the module's docstring says why these).
_COUNTED = "attribution IN ('attributed', 'held', 'declined')"

# The two-key form of the advisory lock: its key space is apart from the one-key form
# (the migrations' lock), and the first key keeps sessions and addresses apart.
_LOCK = "SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))"
_SESSION_LOCK = "clicktrack.order_fraud.session"
_ADDRESS_LOCK = "clicktrack.order_fraud.address"

# Others placed in (this order's time - window, this order's time], at most $5 of them
# counted (enough to decide). On the orders_session / orders_click_ip indexes.
_RECENT = """
    SELECT count(*) FROM (
        SELECT 1 FROM orders
        WHERE {column} = $1 AND ordered_at > $2 AND ordered_at <= $3 AND id <> $4
          AND {counted}
        LIMIT $5) recent"""
_RECENT_IN_SESSION = _RECENT.format(column="session_id", counted=_COUNTED)
_RECENT_FROM_ADDRESS = _RECENT.format(column="click_ip", counted=_COUNTED)

_BOUGHT_BEFORE = f"""
    SELECT EXISTS (
        SELECT 1 FROM orders
        WHERE session_id = $1 AND ordered_at <= $2 AND id <> $3 AND merchant_id = $4
          AND {_COUNTED})"""


@dataclass(frozen=True)
class FraudRules:
    """The rules in force; a zero or false field leaves its rule off.

    ``min_click_to_order``: hold an order placed sooner than this after its click.
    ``max_orders_per_session`` / ``max_orders_per_address``: hold an order that makes more
    than this many (itself included) from one session / click address within
    ``orders_window`` before it. ``hold_flagged``: an order on a flagged click is held for
    review instead of disqualified. ``repeat_new_buyer``: hold a new-buyer order from a
    session that already bought from the same merchant."""

    min_click_to_order: timedelta = timedelta(0)
    max_orders_per_session: int = 0
    max_orders_per_address: int = 0
    orders_window: timedelta = timedelta(hours=24)
    hold_flagged: bool = False
    repeat_new_buyer: bool = False

    async def hold_rule(self, conn: Conn, candidate: Candidate) -> str | None:
        """The name (a ``FraudRule``) of the first rule that holds ``candidate``; None when
        none does. Runs in the attributing transaction, whose advisory locks it takes."""
        await self._lock(conn, candidate)
        too_fast = candidate.ordered_at - candidate.clicked_at < self.min_click_to_order
        if self.min_click_to_order and too_fast:
            return FraudRule.click_to_order_too_fast
        session, address = candidate.session_id, candidate.click_ip
        if self.max_orders_per_session and session is not None:
            if await self._too_many(conn, _RECENT_IN_SESSION, session, candidate, by_session=True):
                return FraudRule.too_many_orders_per_session
        if self.max_orders_per_address and address is not None:
            if await self._too_many(
                conn, _RECENT_FROM_ADDRESS, address, candidate, by_session=False
            ):
                return FraudRule.too_many_orders_per_address
        if self.repeat_new_buyer and candidate.new_buyer and session is not None:
            if await conn.fetchval(
                _BOUGHT_BEFORE,
                session,
                candidate.ordered_at,
                candidate.order_id,
                candidate.merchant_id,
            ):
                return FraudRule.repeat_new_buyer
        return None

    async def _lock(self, conn: Conn, candidate: Candidate) -> None:
        """Take the locks of the counting rules in force, whichever rule then decides: a
        held order counts too, so it must be seen by the next order of its session."""
        if candidate.session_id is not None and (
            self.max_orders_per_session or self.repeat_new_buyer
        ):
            await conn.execute(_LOCK, _SESSION_LOCK, candidate.session_id)
        if candidate.click_ip is not None and self.max_orders_per_address:
            await conn.execute(_LOCK, _ADDRESS_LOCK, candidate.click_ip)

    async def _too_many(
        self, conn: Conn, sql: str, key: str, candidate: Candidate, *, by_session: bool
    ) -> bool:
        """Whether the other orders of ``key`` in the window, plus this one, exceed the
        session's (``by_session``) or the address's limit."""
        limit = self.max_orders_per_session if by_session else self.max_orders_per_address
        others: int = await conn.fetchval(
            sql,
            key,
            candidate.ordered_at - self.orders_window,
            candidate.ordered_at,
            candidate.order_id,
            limit,
        )
        return others + 1 > limit


def fraud_rules(settings: Settings) -> FraudRules:
    """The rules ``settings`` switch on (``CLICKTRACK_FRAUD_*``)."""
    return FraudRules(
        min_click_to_order=timedelta(seconds=settings.fraud_min_click_to_order_s),
        max_orders_per_session=settings.fraud_max_orders_per_session,
        max_orders_per_address=settings.fraud_max_orders_per_address,
        orders_window=timedelta(hours=settings.fraud_orders_window_h),
        hold_flagged=settings.fraud_hold_flagged_clicks,
        repeat_new_buyer=settings.fraud_repeat_new_buyer,
    )
