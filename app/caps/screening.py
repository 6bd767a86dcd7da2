"""The screening every process that attributes orders runs: the fraud rules its settings
switch on, and the caps (``app/orders/screening.py`` says in what order)."""

from __future__ import annotations

from app.caps.orders import order_caps
from app.orders.fraud import fraud_rules
from app.orders.screening import Screening
from app.settings import Settings


def order_screening(settings: Settings) -> Screening:
    """The fraud rules of ``settings`` and the caps, counted in the period time zone."""
    return Screening(fraud=fraud_rules(settings), caps=order_caps(settings.period_tz))
