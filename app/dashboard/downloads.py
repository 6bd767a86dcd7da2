"""The dashboard's CSV downloads, for the signed-in publisher: the same exports as the API's
(``app/reports/exports.py``), from the query's text, checked as the API checks it (the same
days, months and groupings); days are those of the period time zone. Bad input raises
``InvalidInput``."""

from __future__ import annotations

from datetime import UTC, datetime

from app.core.resources import Resources
from app.dashboard import inputs
from app.money.periods import Period
from app.reports import exports, income, ranges, traffic
from app.reports.exports import CsvExport
from app.reports.orders import OrderExport
from app.traffic.days import today


def orders(
    owner: int, resources: Resources, first: str | None, last: str | None, bom: str | None
) -> CsvExport:
    """Live Order Tracking over the days asked for (by order date, every order)."""
    tz, now = resources.settings.period_tz, datetime.now(UTC)
    days = ranges.day_range(*inputs.days(first, last, today(tz)), today(tz))
    export = OrderExport(owner, *days)
    return exports.orders_csv(resources.pool, export, tz, now, bom=inputs.flag(bom, "bom"))


def traffic_by(
    owner: int,
    resources: Resources,
    first: str | None,
    last: str | None,
    group_by: str,
    bom: str | None,
    filters: traffic.Filters = traffic.NO_FILTERS,
) -> CsvExport:
    """The traffic report over the days asked for, grouped and filtered as asked."""
    tz = resources.settings.period_tz
    days = ranges.day_range(*inputs.days(first, last, today(tz)), today(tz))
    query = traffic.traffic_query(owner, *days, tz, group_by, filters)
    return exports.traffic_csv(resources.pool, query, bom=inputs.flag(bom, "bom"))


async def income_by_period(
    owner: int, resources: Resources, start: str | None, end: str | None, bom: str | None
) -> CsvExport:
    """Income over the calculation periods asked for (``YYYY-MM``, as the API's
    ``/reports/income``); by default the last 12."""
    with_bom = inputs.flag(bom, "bom")
    tz, now = resources.settings.period_tz, datetime.now(UTC)
    for text, name in ((start, "from"), (end, "to")):  # each end blamed on its own name
        if text:
            Period.parse(text, field=name)
    first, last = ranges.period_range(start or None, end or None, now, tz)
    async with resources.pool.acquire() as conn:
        found = await income.income_by_period(conn, owner, first, last, tz, now)
    return exports.income_csv(found, tz, bom=with_bom)
