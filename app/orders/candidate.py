"""What screening judges an order by (``screening.py``, ``fraud.py``, ``app/caps/orders.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class Candidate:
    """An order whose click is found and which the attribution rules accept, with what
    screening judges it by (times UTC, amount in US dollars)."""

    order_id: int
    merchant_id: int
    ordered_at: datetime
    amount: Decimal
    category: str
    new_buyer: bool
    clicked_at: datetime
    flags: int  # the click's quality flags (app.clicks.record.Flag)
    publisher_id: int
    link_id: int | None
    cn: str | None
    session_id: str | None
    click_ip: str | None  # as the click stored it (masked per the privacy mode)
