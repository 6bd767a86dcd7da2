"""Caps: what one is, and the rules its fields obey, in plain words. Pure rules, no storage
(``store.py`` keeps caps in Postgres; docs/commissions.md, "Caps").

A cap limits one publisher's clicks, orders or commission per window (a day, a calendar
month or a calculation period, in the period time zone: ``windows.py``), over all its
traffic, or one of its links, or one campaign (the ``cn`` tracking value). Its limit is
kept in whole units: clicks, orders, or US cents for commission (shown as dollars,
``"125.50"``). A click cap may name a ``fallback_url`` where clicks over it are sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from app.caps.windows import CapPeriod
from app.core.tracking import value_problem
from app.errors import InvalidInput
from app.links.model import LinkError, validate_destination

# The column is a bigint: a limit (in clicks, orders or cents) can be at most this.
MAX_CAP = 2**63 - 1
_CENT = Decimal("0.01")


class CapMetric(StrEnum):
    clicks = "clicks"
    orders = "orders"
    commission = "commission"  # in cents, stored; dollars, shown


class CapScope(StrEnum):
    """What a cap counts: all the publisher's traffic, one of its links, or one campaign."""

    publisher = "publisher"
    link = "link"
    campaign = "campaign"


METRIC_WORDS = "must be clicks, orders or commission"
PERIOD_WORDS = "must be day, month or calculation_period"


class CapError(InvalidInput):
    """A cap cannot be stored as asked (the message and field say why)."""


@dataclass(frozen=True)
class Cap:
    """A stored cap. ``cap`` is in clicks, orders or cents (``metric``); ``link_code`` is
    the code of ``link_id``'s link (None with it); times are UTC."""

    id: int
    publisher_id: int
    metric: CapMetric
    period: CapPeriod
    cap: int
    link_id: int | None
    link_code: str | None
    campaign: str | None
    fallback_url: str | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def enabled(self) -> bool:
        return self.disabled_at is None

    @property
    def scope(self) -> CapScope:
        if self.link_id is not None:
            return CapScope.link
        return CapScope.campaign if self.campaign is not None else CapScope.publisher


def audit_state(found: Cap) -> dict[str, Any]:
    """What the audit log keeps of a cap (the API's and the CLI's entries alike; the limit
    in stored units: clicks, orders, cents)."""
    return {
        "id": found.id,
        "publisher_id": found.publisher_id,
        "metric": found.metric,
        "period": found.period,
        "cap": found.cap,
        "link": found.link_code,
        "campaign": found.campaign,
        "fallback_url": found.fallback_url,
        "disabled_at": found.disabled_at,
    }


def parse_metric(text: str) -> CapMetric:
    """``text`` as a metric; raises ``CapError`` (field ``metric``) for anything else."""
    try:
        return CapMetric(text)
    except ValueError:
        raise CapError(METRIC_WORDS, field="metric") from None


def parse_period(text: str) -> CapPeriod:
    """``text`` as a window; raises ``CapError`` (field ``period``) for anything else."""
    try:
        return CapPeriod(text)
    except ValueError:
        raise CapError(PERIOD_WORDS, field="period") from None


def cap_units(metric: CapMetric, value: Decimal | int | str) -> int:
    """The limit as stored: a whole number of clicks or orders, or a dollar amount with at
    most two decimals as cents (``"125.50"`` -> 12550). Raises ``CapError`` (field ``cap``)
    in words for a negative, fractional (clicks, orders), sub-cent or too large value."""
    try:
        number = Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        raise CapError("must be a number", field="cap") from None
    if not number.is_finite():
        raise CapError("must be a number", field="cap")
    if number < 0:
        raise CapError("must be 0 or more", field="cap")
    # Before any rounding: a huge number (1e30) cannot be quantized to cents at all.
    if number > Decimal(MAX_CAP) / (100 if metric is CapMetric.commission else 1):
        raise CapError("is too large", field="cap")
    if metric is CapMetric.commission:
        if number != number.quantize(_CENT):
            raise CapError(
                "must be US dollars with at most 2 digits after the decimal point, like 125.50",
                field="cap",
            )
        units = int(number * 100)
    else:
        if number != number.to_integral_value():
            raise CapError(f"must be a whole number of {metric.value}", field="cap")
        units = int(number)
    if units > MAX_CAP:
        raise CapError("is too large", field="cap")
    return units


def cap_shown(metric: CapMetric, units: int) -> str:
    """A limit or a count as an answer shows it: ``"3"``, or dollars ``"125.50"``."""
    if metric is CapMetric.commission:
        return str((Decimal(units) / 100).quantize(_CENT))
    return str(units)


def check_campaign(text: str) -> str:
    """A campaign (``cn``) as the redirect would keep it; raises ``CapError`` (field
    ``campaign``) for an empty one or one the redirect would drop (so no click has it)."""
    if not text:
        raise CapError("must not be empty", field="campaign")
    problem = value_problem(text)
    if problem is not None:
        raise CapError(f"{problem}: the redirect drops such a cn value", field="campaign")
    return text


def check_fallback(
    metric: CapMetric, url: str | None, allowed_hosts: tuple[str, ...]
) -> str | None:
    """A click cap's fallback as stored (checked as a link's destination, on the same
    allow-list); raises ``CapError`` (field ``fallback_url``) for a bad one, or any on an
    order or commission cap (orders over a cap are declined, there is nowhere to send)."""
    if url is None:
        return None
    if metric is not CapMetric.clicks:
        raise CapError(
            "only a click cap has one: orders over an order or commission cap are declined",
            field="fallback_url",
        )
    try:
        return validate_destination(url, allowed_hosts)
    except LinkError as exc:  # the same rule as a link's destination, under this field's name
        raise CapError(exc.message, field="fallback_url") from None


def check_scope(link: str | None, campaign: str | None) -> None:
    """A cap counts one link, or one campaign, or neither (all the publisher's traffic)."""
    if link is not None and campaign is not None:
        raise CapError(
            "a cap counts one link or one campaign, not both: send one of link and campaign",
            field="campaign",
        )


@dataclass(frozen=True)
class CapSpec:
    """A new cap, checked (``new_cap``): limit in stored units, link resolved to its id."""

    publisher_id: int
    metric: CapMetric
    period: CapPeriod
    cap: int
    link_id: int | None = None
    campaign: str | None = None
    fallback_url: str | None = None


@dataclass(frozen=True)
class CapRequest:
    """A new cap as a caller sends it (API body, CLI arguments), before any check; ``link``
    is the link's code."""

    metric: str
    period: str
    cap: Decimal | int | str
    link: str | None = None
    campaign: str | None = None
    fallback_url: str | None = None


def new_cap(
    request: CapRequest, publisher_id: int, link_id: int | None, allowed_hosts: tuple[str, ...]
) -> CapSpec:
    """``request`` checked field by field (``CapError`` names the first field at fault),
    for ``publisher_id`` and its link ``link_id`` (already resolved from ``request.link``)."""
    metric = parse_metric(request.metric)
    period = parse_period(request.period)
    units = cap_units(metric, request.cap)
    check_scope(request.link, request.campaign)
    campaign = None if request.campaign is None else check_campaign(request.campaign)
    fallback = check_fallback(metric, request.fallback_url, allowed_hosts)
    return CapSpec(publisher_id, metric, period, units, link_id, campaign, fallback)
