"""Order and commission caps, enforced in Postgres at attribution (docs/commissions.md,
"Caps"): the cap check ``app/orders/screening.py`` calls."""

from __future__ import annotations

from datetime import tzinfo

from app.orders.screening import CapCheck, no_caps


def order_caps(tz: tzinfo) -> CapCheck:
    """The cap check of orders whose windows are counted in ``tz`` (the period time zone)."""
    del tz
    return no_caps
