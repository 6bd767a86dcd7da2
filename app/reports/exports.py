"""The CSV exports the API and the dashboard serve: traffic, Live Order Tracking and income.
Each is a file name and its bytes, streamed in chunks (``csvout.csv_chunks``); the caller
checks the query first (``traffic.traffic_query``, ``ranges``). Days and times are those of
the period time zone, named in the header (the day and time columns) and in the
``X-Time-Zone`` header of the download."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from app.core.db import Pool
from app.reports import csvout, income, orders, traffic
from app.reports.csvout import Cell
from app.traffic import counts
from app.traffic.counts import TrafficQuery
from app.traffic.days import zone_name

MEDIA_TYPE = "text/csv; charset=utf-8"


@dataclass(frozen=True)
class CsvExport:
    filename: str
    chunks: AsyncIterator[bytes]  # nothing is read before the first chunk is asked for
    tz: tzinfo  # the zone of its days and times

    @property
    def headers(self) -> dict[str, str]:
        """The headers a download is sent with (besides ``MEDIA_TYPE``)."""
        return {
            "Content-Disposition": f'attachment; filename="{self.filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Time-Zone": zone_name(self.tz),
        }


def traffic_csv(pool: Pool, query: TrafficQuery, *, bom: bool = False) -> CsvExport:
    """Every row of a checked traffic query: the group's columns, then the counts."""
    rows = traffic.csv_rows(counts.iter_traffic(pool, query), query.group_by)
    return CsvExport(
        f"traffic-{query.first_day}-{query.last_day}.csv",
        csvout.csv_chunks(traffic.csv_header(query.group_by, query.tz), rows, bom=bom),
        query.tz,
    )


def orders_csv(
    pool: Pool, export: orders.OrderExport, tz: tzinfo, now: datetime, *, bom: bool = False
) -> CsvExport:
    """Live Order Tracking: one row per order (``orders.columns``), commissions as of
    ``now``, days and times in ``tz``."""
    rows = orders.order_rows(pool, export, tz, now)
    return CsvExport(
        f"live-orders-{export.first_day}-{export.last_day}.csv",
        csvout.csv_chunks(orders.columns(tz), rows, bom=bom),
        tz,
    )


async def _income_rows(found: Sequence[income.PeriodIncome]) -> AsyncIterator[Sequence[Cell]]:
    for period in found:
        yield period.cells()


def income_csv(found: Sequence[income.PeriodIncome], tz: tzinfo, *, bom: bool = False) -> CsvExport:
    """Income by period (``income.columns``), oldest first; ``found`` is never empty."""
    return CsvExport(
        f"income-{found[0].period}-{found[-1].period}.csv",
        csvout.csv_chunks(income.columns(tz), _income_rows(found), bom=bom),
        tz,
    )
