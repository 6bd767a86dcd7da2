"""What the dashboard page shows, read from the reports: the overview, traffic and orders by
day and by tracking id, and the income of the last periods."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal

from app.accounts.publishers import get_publisher
from app.core.db import Pool
from app.core.resources import Resources
from app.dashboard import pages
from app.dashboard.sessions import DashboardSession
from app.reports import balance, income, overview
from app.reports.balance import BalanceStatus
from app.reports.income import PeriodIncome
from app.settings import Settings
from app.traffic import counts, days
from app.traffic.counts import Dimension, TrafficQuery, TrafficRow

TOP_IDS = 10
INCOME_PERIODS = 6


@dataclass(frozen=True)
class _Breakdowns:
    publisher_name: str
    by_day: list[TrafficRow]
    by_af: list[TrafficRow]
    orders_by_day: dict[date | str | None, overview.OrderCounts]
    orders_by_af: dict[date | str | None, overview.OrderCounts]


async def _breakdowns(pool: Pool, owner: int, first: date, last: date, tz: tzinfo) -> _Breakdowns:
    by_day = TrafficQuery(owner, first, last, tz, (Dimension.day,))
    by_af = TrafficQuery(owner, first, last, tz, (Dimension.af,))
    async with pool.acquire() as conn:
        publisher = await get_publisher(conn, owner)
        assert publisher is not None  # a key's publisher is never deleted
        return _Breakdowns(
            publisher.name,
            await counts.traffic_report(conn, by_day),
            await counts.traffic_report(conn, by_af),
            await overview.order_counts_by(conn, owner, first, last, tz, Dimension.day),
            await overview.order_counts_by(conn, owner, first, last, tz, Dimension.af),
        )


async def _balance(pool: Pool, owner: int, settings: Settings, now: datetime) -> BalanceStatus:
    async with pool.acquire() as conn:
        return await balance.balance_status(conn, owner, settings, now)


async def _periods(pool: Pool, owner: int, tz: tzinfo, now: datetime) -> list[PeriodIncome]:
    async with pool.acquire() as conn:
        periods = income.default_periods(now, tz, INCOME_PERIODS)
        return await income.income_by_period(conn, owner, *periods, tz, now)


def _top_ids(parts: _Breakdowns) -> list[pages.TrackingIdRow]:
    """The tracking ids with the most billable clicks, with their orders."""
    none = overview.OrderCounts(0, 0, Decimal(0))
    top = sorted(parts.by_af, key=lambda r: (-r.billable, -r.clicks, r.af or ""))[:TOP_IDS]
    return [
        pages.TrackingIdRow(
            r.af,
            r.clicks,
            r.unique_clicks,
            r.billable,
            parts.orders_by_af.get(r.af, none).orders,
            parts.orders_by_af.get(r.af, none).completed,
        )
        for r in top
    ]


async def dashboard_view(
    session: DashboardSession, resources: Resources, first: date, last: date, now: datetime
) -> pages.DashboardView:
    """Everything the page shows at ``now``, read on several connections at once."""
    tz = resources.settings.period_tz
    owner, pool = session.publisher_id, resources.pool
    found, parts, periods, account = await asyncio.gather(
        overview.overview(pool, owner, first, last, tz, now),
        _breakdowns(pool, owner, first, last, tz),
        _periods(pool, owner, tz, now),
        _balance(pool, owner, resources.settings, now),
    )
    return pages.DashboardView(
        publisher_name=parts.publisher_name,
        csrf=session.csrf,
        first=first,
        last=last,
        time_zone=days.zone_name(tz),
        overview=found,
        days=days.days_of(first, last),
        traffic={row.day: row for row in parts.by_day if row.day is not None},
        orders={d: c for d, c in parts.orders_by_day.items() if isinstance(d, date)},
        top_ids=_top_ids(parts),
        periods=periods,
        balance=account,
    )
