"""Report routes, under ``/reports``: ``traffic`` (JSON and CSV), ``orders`` (Live Order
Tracking, CSV), ``income`` (JSON and CSV) and ``overview``; one router per module. A
publisher key reads its own; an admin key names the publisher. Days and times are those of
the period time zone (``CLICKTRACK_PERIOD_TIMEZONE``), which every answer names in
``time_zone`` (a CSV: in its day and time columns' names and its ``X-Time-Zone`` header);
ranges include both ends. The reports themselves are ``app/reports/``.

The income report's response models are here, not in ``income.py``: ``app/api/money.py`` has
an ``IncomeOut`` too, so OpenAPI names this one after its module
(``app__api__reports__IncomeOut``), as it did before the routes were split.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from app.api.zones import TimeZoneName


class PeriodIncomeOut(BaseModel):
    period: str = Field(description="YYYY-MM: from the 10th of that month to the 9th of the next")
    first_day: date
    last_day: date
    closed: bool
    state: str = Field(description="`closed`, `running` (not ended) or `ended` (to close)")
    closed_at: datetime | None = Field(description="In the period time zone")
    orders: int = Field(description="Attributed orders placed in the period")
    order_amount: Decimal
    completed_sales: Decimal = Field(description="Credited by the close; open: would be now")
    credited: Decimal
    charged_back: Decimal = Field(description="Chargebacks (<= 0)")
    partial_refunds: Decimal = Field(description="Partial refunds (<= 0)")
    incentive_adjustments: Decimal = Field(description="Incentive adjustments (signed)")
    net: Decimal = Field(
        description="credited + charged_back + partial_refunds + incentive_adjustments"
    )
    estimated_commission: Decimal | None = Field(description="Open periods only")
    rate_source: str = Field(
        description="`override` when a payout override is in force for the period's orders "
        "(the publisher's or its network's), else `plan`"
    )
    credited_at_override: Decimal = Field(
        description="The part of `credited` whose base rate came from a payout override"
    )


class IncomeOut(BaseModel):
    publisher_id: int
    time_zone: TimeZoneName
    periods: list[PeriodIncomeOut]
